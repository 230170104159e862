"""Serving: classifiers for images, Grad-CAM explanations."""
