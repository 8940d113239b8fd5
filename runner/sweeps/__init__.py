"""Sweeps: the Hydra callback that records a sweep's parent and children, and the Optuna search."""
