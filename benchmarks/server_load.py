"""Load on a tracking server backed by PostgreSQL: N runs at once, each logging metric points the way a training run
does (a few keys per step, sent in batches of 1000 values), through runner's own ``RunRecorder`` and ``Writer``, the
code a run's MLflow sidecar runs.

    python -m benchmarks.server_load [--writers 1,2,4,8,16,32] [--steps 2500] [--server-workers 1,2] [--pool-size N] [--out FILE]

It starts a PostgreSQL of its own (durable: fsync on, as a real one) and an ``mlflow server`` in front of it
(tests/servers.py, the same servers the tests start), on 127.0.0.1. Each writer is a process forked from a
forkserver that imported MLflow once (the import is not what is measured); all start together behind a barrier.
``tests/test_postgres.py`` runs ``load`` with 16 writers and checks that every point arrived.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: what a run logs at every step (train/loss, its accuracy, the learning rate, the step's time)
KEYS = ("load/loss", "load/accuracy", "load/lr", "load/step_time")


def write_run(url: str, experiment: str, index: int, steps: int, start, results) -> None:
    """One writer: a run of ``steps`` steps with ``KEYS`` at each, ended FINISHED; reports its times."""
    from runner.tracking.runs import start_run
    from runner.tracking.store import Target

    start.wait()
    began = time.time()
    try:
        recorder = start_run(Target(url, None, experiment), f"writer-{index}", tags={"load.writer": index})
        for step in range(steps):
            recorder.log_metrics({key: math.sin(step * (k + 1) + index) for k, key in enumerate(KEYS)}, step)
        recorder.end("FINISHED")
        recorder.close()
    except Exception as e:  # noqa: BLE001 - a writer the server did not answer in time is a result of the load
        results.put({"index": index, "error": str(e)[:300], "began": began, "ended": time.time()})
        return
    results.put({"index": index, "run_id": recorder.run_id, "began": began, "ended": time.time()})


def load(url: str, experiment: str, writers: int, steps: int, timeout: float = 300) -> dict:
    """``writers`` runs at once, ``steps`` steps each; their run ids, and the points per second the server took."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["runner.tracking.runs", "mlflow.tracking"])
    start, results = context.Barrier(writers), context.Queue()
    procs = [context.Process(target=write_run, args=(url, experiment, i, steps, start, results)) for i in range(writers)]
    for proc in procs:
        proc.start()
    deadline = time.time() + timeout
    done = []
    try:
        while len(done) < writers:
            if time.time() > deadline:
                raise TimeoutError(f"{writers - len(done)} of {writers} writers did not finish in {timeout:.0f} s")
            try:
                done.append(results.get(timeout=1))
            except Exception:  # noqa: BLE001 - queue.Empty: look at the clock and at dead writers
                dead = [p for p in procs if p.exitcode not in (None, 0)]
                if dead:
                    raise RuntimeError(f"writer exited with {dead[0].exitcode}") from None
    finally:
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
    wall = max(d["ended"] for d in done) - min(d["began"] for d in done)
    finished = sorted((d for d in done if "run_id" in d), key=lambda d: d["index"])
    points = len(finished) * steps * len(KEYS)
    return {
        "writers": writers,
        "steps": steps,
        "points": points,
        "wall_s": wall,
        "points_per_s": points / wall,
        "run_seconds": statistics.median(d["ended"] - d["began"] for d in done),
        "run_ids": [d["run_id"] for d in finished],
        "failed": [d["error"] for d in done if "error" in d],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", default="1,2,4,8,16,32")
    parser.add_argument("--steps", type=int, default=2500)
    parser.add_argument("--server-workers", default="1,2")
    parser.add_argument("--pool-size", type=int, help="the server's database connections per worker (MLflow's default: 5 + 10)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "tests"))
    from servers import Postgres, mlflow_server

    lines = [
        "| server workers | connections per worker | writers | points recorded | wall (s) | points/s | one run (s, median) "
        "| runs failed |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    postgres = Postgres(durable=True).start()
    try:
        for workers in map(int, args.server_workers.split(",")):
            folder = Path(tempfile.mkdtemp(prefix="runner-load-"))
            (folder / "artifacts").mkdir()
            # MLflow's SQLAlchemy pool: 5 connections, 10 more on demand, a request waiting 30 s for one fails
            pool = {"MLFLOW_SQLALCHEMYSTORE_POOL_SIZE": str(args.pool_size)} if args.pool_size else {}
            connections = f"{args.pool_size} + 10" if args.pool_size else "5 + 10"
            database = postgres.create_database(f"load{workers}")
            with mlflow_server(database, folder / "artifacts", env=pool, workers=workers) as url:
                for writers in map(int, args.writers.split(",")):
                    r = load(url, f"load-{writers}", writers, args.steps)
                    line = (
                        f"| {workers} | {connections} | {writers} | {r['points']} | {r['wall_s']:.2f} | "
                        f"{r['points_per_s']:.0f} | "
                        f"{r['run_seconds']:.2f} | {len(r['failed'])}{': ' + r['failed'][0] if r['failed'] else ''} |"
                    )
                    print(line, flush=True)
                    lines.append(line)
    finally:
        postgres.close()
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
