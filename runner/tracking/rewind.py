"""A resumed run's metric points after its checkpoint, for ``Writer.continue_after`` (runner.tracking.writer):
read (``points_after``), and deleted where the store is MLflow's SQLAlchemy store (``truncate``), so no point
is logged twice. Writes to MLflow; called only by the Writer, the one writer of runs.
"""

from __future__ import annotations

from typing import Any

from runner.tracking.store import retrying


def points_after(client, run_id: str, step: int) -> dict[str, dict[int, float]]:
    """metric key -> {step: value} of the run's points after ``step``."""
    run = client.get_run(run_id)
    latest = getattr(run.data, "_metric_objs", None)  # each key's latest point, with its step
    keys = [m.key for m in latest if m.step > step] if latest is not None else list(run.data.metrics)
    found: dict[str, dict[int, float]] = {}
    for key in keys:
        points = {m.step: m.value for m in client.get_metric_history(run_id, key) if m.step > step}
        if points:
            found[key] = points
    return found


def truncate(client, run_id: str, step: int) -> bool:
    """Delete the run's metric points after ``step``, and set each key's latest value back to its
    last point left, in one transaction, where the store is MLflow's SQLAlchemy store (SQLite,
    PostgreSQL, MySQL). False where it is not (a tracking server: its API cannot delete a point)."""
    try:
        from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        store = client._tracking_client.store
    except (ImportError, AttributeError):
        return False
    if not isinstance(store, SqlAlchemyStore):
        return False

    def session():
        try:
            return store.ManagedSessionMaker(read_only=False)
        except TypeError:  # an MLflow whose sessions have no read_only flag
            return store.ManagedSessionMaker()

    def delete() -> None:
        with session() as s:
            ours: Any = SqlMetric.run_uuid == run_id
            keys = [k for (k,) in s.query(SqlMetric.key).filter(ours, SqlMetric.step > step).distinct()]
            s.query(SqlMetric).filter(ours, SqlMetric.step > step).delete(synchronize_session=False)
            for key in keys:
                s.query(SqlLatestMetric).filter(SqlLatestMetric.run_uuid == run_id, SqlLatestMetric.key == key).delete(
                    synchronize_session=False
                )
                last = (
                    s.query(SqlMetric)
                    .filter(ours, SqlMetric.key == key)
                    .order_by(SqlMetric.step.desc(), SqlMetric.timestamp.desc(), SqlMetric.value.desc())
                    .first()
                )
                if last is not None:  # MLflow's rule for the latest value: the highest (step, timestamp, value)
                    s.add(
                        SqlLatestMetric(
                            key=key,
                            value=last.value,
                            timestamp=last.timestamp,
                            step=last.step,
                            is_nan=last.is_nan,
                            run_uuid=run_id,
                        )
                    )

    retrying(delete, "delete metric points after the checkpoint")
    return True
