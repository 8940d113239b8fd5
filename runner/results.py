"""``python -m runner.results``: recorded runs as a table (the params that vary, final metrics, status).

Sweep parent runs are left out: each sweep's jobs are rows, and ``--sweep`` selects one sweep.

    python -m runner.results                          every run in ./outputs/mlflow.db
    python -m runner.results --experiment mnist --sort test/accuracy
    python -m runner.results --sweep <parent run id> --csv sweep.csv
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import pandas as pd

from runner.tracking.store import default_store, open_client


#: the metrics shown by default: everything but the per-parameter gradient-check figures
def _shown(metric: str) -> bool:
    return not metric.startswith("gradcheck/") or metric == "gradcheck/max_rel_error"


def runs_table(uri: str, experiment: str | None = None, sweep: str | None = None) -> pd.DataFrame:
    """One row per run: run id, experiment, name, status, the params that differ between the runs, metrics."""
    client = open_client(uri)
    if experiment:
        found = client.get_experiment_by_name(experiment)
        if found is None:
            names = sorted(e.name for e in client.search_experiments())
            raise SystemExit(f"runner.results: no experiment {experiment!r} in {uri}; experiments: {', '.join(names) or 'none'}")
        experiments = [found]
    else:
        experiments = client.search_experiments()
    ids = {e.experiment_id: e.name for e in experiments}
    filter_string = f"tags.mlflow.parentRunId = '{sweep}'" if sweep else ""
    runs = client.search_runs(list(ids), filter_string=filter_string, max_results=50000) if ids else []
    rows = []
    for run in runs:
        if run.data.tags.get("runner.sweep") == "parent":  # a sweep's summary, not a training run
            continue
        row = {
            "run_id": run.info.run_id,
            "experiment": ids[run.info.experiment_id],
            "name": run.info.run_name,
            "status": run.info.status,
            "start": pd.to_datetime(run.info.start_time, unit="ms"),
        }
        row.update({f"params.{k}": v for k, v in run.data.params.items()})
        row.update({k: v for k, v in run.data.metrics.items() if _shown(k)})
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    params = [c for c in table.columns if c.startswith("params.")]
    varying = [c for c in params if table[c].astype(str).nunique(dropna=False) > 1]
    table = table.drop(columns=[c for c in params if c not in varying])
    return table.rename(columns={c: c.removeprefix("params.") for c in varying})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runner.results", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--uri",
        default=os.environ.get("MLFLOW_TRACKING_URI") or default_store(Path("outputs"))[0],
        help="tracking store (default: $MLFLOW_TRACKING_URI, else ./outputs/mlflow.db)",
    )
    parser.add_argument("--experiment", help="only the runs of this experiment")
    parser.add_argument("--sweep", metavar="RUN_ID", help="only the jobs of the sweep with this parent run id")
    parser.add_argument("--sort", metavar="COLUMN", help="sort by this column, e.g. val/accuracy (descending; see --ascending)")
    parser.add_argument("--ascending", action="store_true")
    parser.add_argument("--csv", metavar="PATH", help="also write the table as CSV")
    args = parser.parse_args(argv)
    if args.uri.startswith("sqlite:///") and not Path(args.uri.removeprefix("sqlite:///")).is_file():
        print(f"runner.results: no store at {args.uri}; run from the directory holding outputs/, or give --uri", file=sys.stderr)
        return 1
    table = runs_table(args.uri, args.experiment, args.sweep)
    if table.empty:
        print("no runs")
        return 0
    if args.sort:
        if args.sort not in table.columns:
            print(f"runner.results: --sort {args.sort!r}: no such column; columns: {', '.join(table.columns)}", file=sys.stderr)
            return 1
        table = table.sort_values(args.sort, ascending=args.ascending, na_position="last")
    if args.csv:
        table.to_csv(args.csv, index=False)
    shown = table.assign(name=table["name"].str.slice(0, 48))
    with pd.option_context("display.max_columns", None, "display.width", 250):
        print(shown.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
