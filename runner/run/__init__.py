"""One run's lifecycle: the Hydra task, the preflight before anything is created, start times,
interrupts, checkpoints and resume."""
