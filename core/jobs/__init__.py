"""Jobs: background work in worker processes, one queue per slot."""
