"""Recording runs in MLflow: one ``Writer`` (the only code that writes to MLflow), the ``Recorder`` every run,
sweep parent and failed job is recorded through, its two transports (in this process; a child process,
``python -m runner.tracking.sidecar``), the spill file, and the SQLite store made safe."""
