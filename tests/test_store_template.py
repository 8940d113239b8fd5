"""A new SQLite store is a copy of an empty one kept in the user cache (runner.tracking.sqlite_store): made once by
MLflow's own migrations, copied afterwards, never trusted when it is not an empty store of this MLflow's schema."""

import logging
import sqlite3

import pytest

from runner.tracking import sqlite_store


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("RUNNER_CACHE_DIR", str(folder))
    return folder / "mlflow-stores"


def schema_sql(db) -> list[tuple]:
    """Every table's and index's definition, its clauses as a set: MLflow's migrations write a table's constraints in
    an order that depends on what the process did before (two stores made in one process differ so)."""
    with sqlite3.connect(db) as con:
        found = con.execute("select type, name, sql from sqlite_master").fetchall()
    clauses = []
    for kind, name, sql in found:
        clauses.append((kind, name, frozenset(part.strip().rstrip(",") for part in (sql or "").splitlines())))
    return sorted(clauses, key=str)


def record_a_run(db) -> str:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    run = client.create_run(client.create_experiment("kept"), run_name="kept")
    client.log_metric(run.info.run_id, "m", 1.0, step=3)
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def test_the_first_store_is_kept_as_the_template_and_later_stores_are_copies(tmp_path, cache):
    first, second = tmp_path / "a" / "mlflow.db", tmp_path / "b" / "mlflow.db"
    first.parent.mkdir()
    second.parent.mkdir()
    sqlite_store.create(first)
    [template] = cache.iterdir()
    assert template == sqlite_store.template_path() and sqlite_store.pristine(template)
    made = template.stat().st_mtime_ns
    sqlite_store.create(second)
    assert template.stat().st_mtime_ns == made  # used, not made again
    assert second.read_bytes() == template.read_bytes()
    assert schema_sql(second) == schema_sql(first)  # the schema MLflow's migrations make, table for table
    for db in (first, second):  # MLflow opens either (the Default experiment added) and records into it
        sqlite_store.open_once(f"sqlite:///{db}")
        assert sqlite_store.complete(sqlite_store.read_state(db))
        run_id = record_a_run(db)
        with sqlite3.connect(db) as con:
            assert con.execute("select run_uuid, status from runs").fetchall() == [(run_id, "FINISHED")]
    assert sqlite_store.pristine(template)  # nothing recorded reached it
    assert not list(cache.glob(".*")) and not list(tmp_path.glob("*/.mlflow.db.creating-*"))


def test_a_store_is_created_through_ensure_from_the_template(tmp_path, cache):
    for name in ("a", "b"):
        db = tmp_path / name / "outputs" / "mlflow.db"
        sqlite_store.ensure(f"sqlite:///{db}")
        assert sqlite_store.complete(sqlite_store.read_state(db))
    assert [p.name for p in cache.iterdir()] == [sqlite_store.template_path().name]


@pytest.mark.parametrize("damage", ["holds a run", "older revision", "leftover table", "not a database", "truncated"])
def test_a_template_that_is_not_an_empty_store_of_this_schema_is_made_anew(tmp_path, cache, caplog, damage):
    sqlite_store.create(tmp_path / "first.db")
    template = sqlite_store.template_path()
    if damage == "holds a run":
        sqlite_store.open_once(f"sqlite:///{template}")
        record_a_run(template)
    elif damage in ("older revision", "leftover table"):
        with sqlite3.connect(template) as con:
            if damage == "older revision":
                con.execute("update alembic_version set version_num = 'an-older-one'")
            else:
                con.execute("create table _alembic_tmp_metrics as select * from metrics")
    elif damage == "not a database":
        template.write_bytes(b"not a database at all" * 100)
    else:
        template.write_bytes(template.read_bytes()[: 4096 * 3])
    assert not sqlite_store.pristine(template)
    db = tmp_path / "new.db"
    with caplog.at_level(logging.WARNING, logger="runner.tracking"):
        sqlite_store.create(db)
    assert f"the template store {template} is not an empty store of MLflow's schema: made anew" in caplog.text
    assert sqlite_store.pristine(db) and sqlite_store.pristine(template)
    assert schema_sql(db) == schema_sql(tmp_path / "first.db")


def test_a_cache_that_cannot_be_written_leaves_the_store_made_by_mlflow(tmp_path, monkeypatch):
    blocked = tmp_path / "a-file"
    blocked.write_text("the cache folder's place is taken by a file")
    monkeypatch.setenv("RUNNER_CACHE_DIR", str(blocked))
    db = tmp_path / "mlflow.db"
    sqlite_store.create(db)
    assert sqlite_store.pristine(db) and blocked.read_text().startswith("the cache folder")
    assert not list(tmp_path.glob(".*"))
