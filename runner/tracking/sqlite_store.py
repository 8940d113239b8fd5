"""The embedded SQLite store, made safe to open from many processes at once: ``ensure(uri)``.

MLflow creates (and upgrades) a SQLite store's schema the first time a process opens it, with
nothing to stop two processes doing it together: 8 runs started at once on a fresh store here
recorded 0, 0, 1 and 4 of 8 (``table experiments already exists``, ``duplicate column name: step``),
and twice the store was left half-created (``table _alembic_tmp_latest_metrics already exists`` for
every later run); 2 at once lost one or both.

So before MLflow opens a ``sqlite:///`` store, ``ensure`` reads it (stdlib ``sqlite3``, read-only,
a few milliseconds): a complete store (the schema revision this MLflow expects, no migration's
leftovers, the Default experiment) is opened as it is, without a lock. Anything else is dealt with
under an exclusive ``flock`` on ``<store>.lock`` beside it (released by the kernel when its holder
dies, even by SIGKILL), one process at a time:

- no store yet (or one holding no table): the schema is created in a temporary file beside it,
  which is renamed into place when complete: the store's path never holds a half-created store;
- a store half-created by a process that died (a revision this MLflow knows, leftover
  ``_alembic_tmp_*`` tables) that holds nothing (no run, no experiment but Default): created anew;
- one that holds runs: leftover ``_alembic_tmp_<table>`` copies whose ``<table>`` exists are dropped
  (an unfinished migration's copy), then MLflow opens it (and upgrades it when tables are missing,
  as it does); what cannot be repaired is one line naming the store, its state and the fix;
- a revision this MLflow does not know (a store of a newer MLflow): left to MLflow's own error.

The lock is held while MLflow itself first opens the store (which adds the Default experiment).

A new store's schema is MLflow's own: ``_initialize_tables`` runs every migration of its history, about
1 s. The first store this MLflow creates on a machine is kept, empty, as a template in the user cache
(``$RUNNER_CACHE_DIR/mlflow-stores``, else ``$XDG_CACHE_HOME/runner/mlflow-stores``), named after the
versions that made it (MLflow, its schema revision, SQLAlchemy, Alembic); later new stores are copies of
it (milliseconds). A copy is used only when it reads as pristine: this MLflow's revision, every table,
no migration's leftovers, nothing recorded, and SQLite's ``quick_check``; anything else is rebuilt by
MLflow, and the template with it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sqlite3
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from runner.api import RunnerError

log = logging.getLogger("runner.tracking")

#: How long a process waits for another one creating or repairing the store.
LOCK_TIMEOUT_S = 300.0


def path_of(uri: str) -> Path | None:
    """The file of a ``sqlite:///`` URI (relative to the cwd, as MLflow has it); None for anything else."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///") :].split("?", 1)[0]
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    return Path(path).absolute()


@dataclass
class State:
    """What a store file holds, read without MLflow."""

    exists: bool
    tables: set[str] = field(default_factory=set)
    revision: str | None = None
    default_experiment: bool = False
    holds_data: bool = False

    @property
    def leftovers(self) -> list[str]:
        return sorted(t for t in self.tables if t.startswith("_alembic_tmp_"))

    @property
    def empty(self) -> bool:
        return not any(not t.startswith("alembic_") for t in self.tables)


def read_state(db: Path, writable: bool = False) -> State:
    """Read-only by default; ``writable`` (under the lock) lets SQLite roll back what a writer that died left,
    and looks for anything recorded (``holds_data``)."""
    if not db.is_file() or db.stat().st_size == 0:
        return State(exists=db.exists())
    with contextlib.closing(sqlite3.connect(f"{db.as_uri()}{'' if writable else '?mode=ro'}", uri=True, timeout=30)) as con:
        tables = {name for (name,) in con.execute("select name from sqlite_master where type = 'table'")}
        state = State(True, tables)
        if "alembic_version" in tables:
            row = con.execute("select version_num from alembic_version").fetchone()
            state.revision = row[0] if row else None
        if "experiments" in tables:
            state.default_experiment = con.execute("select 1 from experiments where experiment_id = 0").fetchone() is not None
        # anything recorded: a row in any table but the schema's own (its revision, the Default experiment and workspace)
        for table in tables - {"alembic_version", "sqlite_sequence", "workspaces"} if writable else ():
            skip = " where experiment_id != 0" if table == "experiments" else ""
            if con.execute(f'select 1 from "{table}"{skip} limit 1').fetchone() is not None:
                state.holds_data = True
                break
    return state


@lru_cache(maxsize=1)
def schema() -> tuple[str, frozenset[str], frozenset[str]]:
    """(the head revision, every revision, the tables) of this MLflow's store schema."""
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401  (its models, as MLflow checks them)
    from alembic.script import ScriptDirectory
    from mlflow.store.db.base_sql_model import Base
    from mlflow.store.db.utils import _get_alembic_config

    script = ScriptDirectory.from_config(_get_alembic_config(""))
    [head] = script.get_heads()
    return head, frozenset(s.revision for s in script.walk_revisions()), frozenset(Base.metadata.tables)


def complete(state: State) -> bool:
    head, _, tables = schema()
    return state.revision == head and not state.leftovers and tables <= state.tables and state.default_experiment


def ensure(uri: str) -> None:
    """Make the SQLite store at ``uri`` safe for MLflow to open (see the module's doc); nothing for other URIs."""
    db = path_of(uri)
    if db is None:
        return
    try:
        if complete(read_state(db)):
            return  # the common case: no lock, no write
    except sqlite3.DatabaseError:
        pass  # e.g. being replaced, or not a database: looked at again under the lock
    with lock(db):
        prepare_locked(db, uri)


@contextlib.contextmanager
def lock(db: Path):
    """An exclusive ``flock`` on ``<db>.lock``, waited for (at most LOCK_TIMEOUT_S)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: MLflow's own behaviour
        yield
        return
    path = db.with_name(db.name + ".lock")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)  # as MLflow does for a store's folder
        handle = open(path, "a")
    except OSError as e:
        raise RunnerError(f"tracking: cannot create the store's lock {path}: {e.strerror or e}") from None
    with handle:
        began, said = time.monotonic(), False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - began
                if waited > LOCK_TIMEOUT_S:
                    raise RunnerError(
                        f"tracking: the MLflow store {db} has been locked for {LOCK_TIMEOUT_S:.0f} s by another "
                        f"process creating or repairing it (lock {path}); is one stuck?"
                    ) from None
                if waited > 10 and not said:
                    log.warning("tracking: waiting for another process creating or repairing the MLflow store %s", db)
                    said = True
                time.sleep(0.02)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def prepare_locked(db: Path, uri: str) -> None:
    """Under the lock: create, repair or name the store's problem, then let MLflow open it once."""
    for stray in db.parent.glob(f".{db.name}.creating-*"):  # a creator that died: no one else creates now
        stray.unlink(missing_ok=True)
    try:
        state = read_state(db, writable=True)
    except sqlite3.DatabaseError as e:
        raise RunnerError(f"tracking: the MLflow store {db} cannot be read ({e}); move it away to start a new store") from None
    if complete(state):
        return  # another process made it while this one waited
    head, known, _ = schema()
    ours = state.revision is None or state.revision in known  # else a newer MLflow's store: not ours to touch
    if state.empty:
        create(db)
    elif ours and not state.holds_data and (state.leftovers or state.revision != head):
        log.warning(
            "tracking: the MLflow store %s was left half-created (schema revision %s of %s%s) and holds nothing: created anew",
            db,
            state.revision,
            head,
            f", leftover {', '.join(state.leftovers)}" if state.leftovers else "",
        )
        create(db)
    elif ours and state.leftovers:
        drop_leftovers(db, state)
    try:
        open_once(uri)
    except Exception as e:
        after = read_state(db)
        if (after.revision not in known and after.revision is not None) or (after.revision == head and not after.leftovers):
            raise  # another MLflow's store (MLflow's own "Can't locate revision ..." says it), or not the schema
        import mlflow

        leftovers = f", leftover table {', '.join(after.leftovers)}" if after.leftovers else ""
        reason = str(e).splitlines()[0].split(". ")[0][:200] if str(e) else ""
        where_at = (
            "" if str(after.revision) in reason else f"; it is at schema revision {after.revision}, this MLflow expects {head}"
        )
        raise RunnerError(
            f"tracking: MLflow {mlflow.__version__} cannot open the store {db} "
            f"({type(e).__name__}: {reason}{where_at}{leftovers}): "
            "a store of an older MLflow, or one left half-created or half-upgraded by a process that died; "
            "back it up, then run: "
            f"mlflow db upgrade {uri} — or move it away to start a new store"
        ) from None


def create(db: Path) -> None:
    """A complete schema in a temporary file beside ``db`` (a copy of the template, else MLflow's migrations), renamed
    into place."""
    tmp = db.with_name(f".{db.name}.creating-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    if not from_template(tmp):
        _initialize(tmp)
        keep_as_template(tmp)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, db)
    with contextlib.suppress(OSError):  # the rename itself, on disk
        directory = os.open(db.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    log.info("tracking: created the MLflow store %s", db)


def _initialize(path: Path) -> None:
    """MLflow's own creation of an empty store: its first tables, then every migration."""
    from mlflow.store.db.utils import _initialize_tables, create_sqlalchemy_engine

    engine = create_sqlalchemy_engine(f"sqlite:///{path}")
    try:
        _initialize_tables(engine)
    finally:
        engine.dispose()


def cache_folder() -> Path:
    """Where the template lives: ``$RUNNER_CACHE_DIR/mlflow-stores``, else ``$XDG_CACHE_HOME/runner/mlflow-stores``."""
    root = os.environ.get("RUNNER_CACHE_DIR")
    base = Path(root).expanduser() if root else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "runner"
    return base / "mlflow-stores"


def template_path() -> Path:
    """The template of this MLflow, schema revision, SQLAlchemy and Alembic (any of them changed: another file)."""
    import alembic
    import mlflow
    import sqlalchemy

    versions = f"mlflow-{mlflow.__version__}-{schema()[0]}-sqlalchemy-{sqlalchemy.__version__}-alembic-{alembic.__version__}"
    return cache_folder() / f"{versions}.db"


def pristine(path: Path) -> bool:
    """An empty store of this MLflow's schema, intact: what MLflow's creation leaves, nothing recorded."""
    head, _, tables = schema()
    try:
        state = read_state(path, writable=True)
        with contextlib.closing(sqlite3.connect(path, timeout=30)) as con:
            intact = con.execute("pragma quick_check").fetchall() == [("ok",)]
    except sqlite3.DatabaseError:
        return False
    return intact and state.revision == head and not state.leftovers and tables <= state.tables and not state.holds_data


def from_template(tmp: Path) -> bool:
    """``tmp`` made a copy of the template, when there is one and the copy is pristine (else the template is removed)."""
    try:
        template = template_path()
        if not template.is_file():
            return False
        shutil.copyfile(template, tmp)
    except OSError as e:
        log.debug("tracking: no template store (%s); MLflow creates the schema", e)
        tmp.unlink(missing_ok=True)
        return False
    if pristine(tmp):
        return True
    log.warning("tracking: the template store %s is not an empty store of MLflow's schema: made anew", template)
    tmp.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        template.unlink()
    return False


def keep_as_template(made: Path) -> None:
    """A copy of ``made`` (an empty store MLflow just created) kept as the template, written whole under its name at
    once; a cache that cannot be written is left as it is (said at debug level)."""
    partial = None
    try:
        template = template_path()
        template.parent.mkdir(parents=True, exist_ok=True)
        partial = template.with_name(f".{template.name}.{os.getpid()}")
        shutil.copyfile(made, partial)
        with open(partial, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(partial, template)
    except OSError as e:
        log.debug("tracking: could not keep a template store (%s)", e)
        if partial is not None:
            partial.unlink(missing_ok=True)


def drop_leftovers(db: Path, state: State) -> None:
    """Drop ``_alembic_tmp_<table>``, an unfinished migration's copy, where ``<table>`` itself is still there."""
    droppable = [t for t in state.leftovers if t[len("_alembic_tmp_") :] in state.tables]
    if not droppable:
        return
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as con:
        for table in droppable:
            con.execute(f'drop table "{table}"')
        con.commit()
    log.warning(
        "tracking: dropped %s from the MLflow store %s (left by a migration that did not finish)", ", ".join(droppable), db
    )


def open_once(uri: str) -> None:
    """MLflow's own first open of the store: tables it misses, upgrades, the Default experiment."""
    from mlflow.tracking import MlflowClient

    MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
