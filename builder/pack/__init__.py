"""Pack wing: fold checkpoints and settings -> checked folds -> the bundle (manifest, weights, sample)."""
