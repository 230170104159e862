"""Models: compound scaling, EfficientNet, weights, ImageNet labels, timing a forward pass."""
