"""runner: an experiment runner for a deep-learning framework written from scratch in NumPy."""

__version__ = "0.1.0"
