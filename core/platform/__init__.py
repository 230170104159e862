"""Platform: where things live, files, caches, processes, progress, the runtime, errors."""
