"""Recording a run in MLflow: the Tracker, the SQLite store made safe, and the sidecar (MLflow in a
process of its own) with its client in the run's process."""
