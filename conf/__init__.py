"""runner's Hydra configs, installed as the package runner.conf (found with importlib.resources)."""
