"""Data: training and evaluation images (bundled, folders, named datasets) and the baselines that need no training."""
