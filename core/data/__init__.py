"""Data: images, image folders, splits, datasets, zip import, the health check."""
