"""Two runs of one experiment logging the same dataset at the same moment (parallel sweep jobs, runs started together):
MLflow looks for the dataset, then inserts it, so both insert and the second one's transaction failed on the datasets'
unique key, the run's report then tagged ``runner.report.failed``. ``runner.report.inputs.log_inputs`` tries again, and
finds the dataset the other run logged. Real processes on a real SQLite store, started on a shared clock."""

import subprocess
import sys
import time

ROUNDS = 8

#: one process: a run per experiment, its dataset inputs logged at the shared moments
RACER = """
import sys, time
import numpy as np
from mlflow.data.code_dataset_source import CodeDatasetSource  # noqa: F401  (imported before the race, not in it)
from mlflow.data.numpy_dataset import from_numpy  # noqa: F401
from mlflow.tracking import MlflowClient
from runner.report.inputs import _head, log_inputs

uri, start, rounds = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
client = MlflowClient(tracking_uri=uri)
x, y = np.random.default_rng(0).random((150, 4)), np.arange(150) % 3
parts = {"train": slice(0, 100), "val": slice(100, 125), "test": slice(125, 150)}
described = [(context, _head(x[rows]), _head(y[rows])) for context, rows in parts.items()]
runs = [client.create_run(client.get_experiment_by_name(f"e{i}").experiment_id).info.run_id for i in range(rounds)]
for i, run_id in enumerate(runs):
    while time.time() < start + 0.3 * i:
        pass
    try:
        log_inputs(client, run_id, client.get_run(run_id).info.experiment_id, "iris", {"runner.dataset": "iris"}, described)
        print("ok", run_id, flush=True)
    except Exception as e:
        print("failed", run_id, type(e).__name__, str(e).splitlines()[0][:300], flush=True)
"""


def test_two_runs_logging_the_same_dataset_at_once_both_record_it(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    for i in range(ROUNDS):
        client.create_experiment(f"e{i}")
    start = time.time() + 6  # both processes have imported MLflow and made their runs by then
    racers = [
        subprocess.Popen([sys.executable, "-c", RACER, uri, str(start), str(ROUNDS)], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    said = [r.communicate(timeout=120)[0] for r in racers]
    assert all(r.returncode == 0 for r in racers), said
    lines = [line.split() for output in said for line in output.splitlines()]
    assert len(lines) == 2 * ROUNDS and all(line[0] == "ok" for line in lines), said
    for i in range(ROUNDS):
        experiment = client.get_experiment_by_name(f"e{i}").experiment_id
        runs = client.search_runs([experiment])
        assert len(runs) == 2
        digests = []
        for run in runs:  # each run holds its three splits, the same datasets in both
            inputs = run.inputs.dataset_inputs
            contexts = sorted(tag.value for d in inputs for tag in d.tags if tag.key == "mlflow.data.context")
            assert contexts == ["test", "train", "val"], (i, run.info.run_id)
            digests.append({d.dataset.digest for d in inputs})
        assert digests[0] == digests[1] and len(digests[0]) == 3
