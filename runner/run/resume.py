"""What a checkpoint holds for a run, and how a run continues from one (``+resume=<run id or path>``).

A resumed run continues the same MLflow run, from the step after the checkpoint, with the
parameters, optimizer state, layer and batch RNG states and loss window it had: it ends with exactly
the metrics, and the metric histories, the uninterrupted run would have had.

The histories: every point up to a checkpoint's step is in the store before the checkpoint file
exists (``runner.app.checkpointer`` flushes and waits first), so the store never lacks one. It may
hold points *after* it: a process killed hard (SIGKILL, the OOM killer) had sent the store the
metrics of the steps it ran after its last checkpoint (they are flushed every few seconds), and the
resumed run computes those steps again. MLflow has no call that deletes metric points, so
``continue_history`` does one of two things, both exact:

- a SQLAlchemy store (SQLite, PostgreSQL, MySQL: the default ``outputs/mlflow.db``) is reached
  through MLflow's own store object, and the run's points after the checkpoint's step are deleted
  (each key's latest value set back), in one transaction: the resumed run then writes its own, as
  the uninterrupted run did. Exact whatever the interrupted process computed.
- anything else (a tracking server, whose REST API cannot delete a point) keeps the stored points,
  and the resumed run leaves out each point whose metric and step the store already has, checking
  that it computed the same value (the computation is deterministic: same seed and config give
  bitwise the same metrics). ``time/*`` (wall-clock) keep the interrupted process's values. A point
  that differs (resumed on another machine, whose BLAS rounds differently) keeps the stored value,
  is warned about and tagged ``runner.resume.mismatch``: never two points at one step.
"""

from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from runner.api import RunnerError
from runner.run import checkpoint
from runner.tracking import spill
from runner.tracking.recorder import Recorder
from runner.tracking.store import Target, open_client

log = logging.getLogger("runner.resume")

ARTIFACT_DIR = "checkpoints"

#: How a run was started, not what it computes: left out of the config a checkpoint must match
#: (a sweep job resumed by ``+resume_sweep`` carries that key, the job it continues did not).
HOW_STARTED = ("resume", "resume_sweep")


def config_for_hash(config: dict) -> dict:
    """The config that must match between a checkpoint and its resumption (``resume``, ``resume_sweep`` aside)."""
    return {k: v for k, v in config.items() if k not in HOW_STARTED}


def state_of(model, optimizer, training, config: dict, run_id: str, uri: str) -> dict:
    layer_rngs = {
        str(i): layer.rng.bit_generator.state
        for i, layer in enumerate(model.layers)
        if isinstance(getattr(layer, "rng", None), np.random.Generator)
    }
    return {
        "run_id": run_id,
        "tracking_uri": uri,
        "config": config_for_hash(config),
        "config_hash": checkpoint.config_hash(config_for_hash(config)),
        "params": model.params,
        "buffers": model.buffers,
        "layer_rngs": layer_rngs,
        "optimizer": optimizer.state_dict(),
        "training": training.state_dict(),
    }


def restore(state: dict, model, optimizer, training) -> None:
    """Put the checkpoint's arrays into the model in place, and the optimizer's and loop's state back."""
    for kind, arrays in (("params", model.params), ("buffers", model.buffers)):
        for name, array in arrays.items():
            if name not in state[kind] or state[kind][name].shape != array.shape:
                raise RunnerError(f"checkpoint: {kind[:-1]} {name} {array.shape} does not match the checkpoint's model")
            array[...] = state[kind][name]
    for index, rng_state in state["layer_rngs"].items():
        model.layers[int(index)].rng.bit_generator.state = rng_state
    optimizer.load_state_dict(state["optimizer"])
    training.load_state_dict(state["training"])


def check_config(state: dict, config: dict, source: str) -> None:
    """The resumed run must be the same experiment: list every key whose value changed."""
    saved, now = flat(config_for_hash(state["config"])), flat(config_for_hash(config))
    changed = sorted(k for k in saved.keys() | now.keys() if saved.get(k) != now.get(k))
    if changed:
        shown = "; ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in changed[:8])
        raise RunnerError(f"resume={source}: the config differs from the checkpoint's ({shown}); resume with the same overrides")


def flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def find(resume: str, where: Target) -> tuple[dict, str]:
    """The checkpoint state for ``resume`` (a checkpoint file, a run's folder or its ``checkpoints`` folder, a spill
    file, or a run id in the store), and a description of where it came from. What the run could not write to its
    store (a spill file beside it, runner.tracking.spill) is written first: the store then holds every point the
    run logged, and the continuation below keeps each history exact."""
    path = Path(str(resume)).expanduser()
    spills = spill.beside(str(resume))
    if not spills and not path.exists():
        spills = spill.of_run(str(resume), outputs_of(where))
    for kept in spills:
        spill.replay(kept)
    if path.is_file() and spills and path in spills:
        path = path.parent  # the spill file: its run's folder
    if not path.exists() and spills:
        path = spills[0].parent  # a run id whose spill file was found: its local checkpoint
    if path.is_dir():
        path = next((p for p in (path / checkpoint.FILE, path / ARTIFACT_DIR / checkpoint.FILE) if p.is_file()), path)
    if path.is_file():
        return checkpoint.load(path), str(path)
    if path.is_dir():
        raise RunnerError(f"resume={resume}: no {checkpoint.FILE} in {path} (the run stopped before its first checkpoint)")
    client = open_client(where.uri)
    try:
        client.get_run(str(resume))
    except Exception:
        raise RunnerError(f"resume={resume}: neither a checkpoint file nor a run id in {where.uri}") from None
    with tempfile.TemporaryDirectory(prefix="runner-resume-") as folder:  # read whole, then removed
        try:
            local = client.download_artifacts(str(resume), f"{ARTIFACT_DIR}/{checkpoint.FILE}", folder)
        except Exception as e:
            raise RunnerError(
                f"resume={resume}: the run has no {ARTIFACT_DIR}/{checkpoint.FILE} artifact ({type(e).__name__})"
            ) from None
        return checkpoint.load(Path(local)), f"run {resume}"


def outputs_of(where: Target) -> list[Path]:
    """The outputs folders where a run's folder (and a spill file in it) may be: ``./outputs`` and the default store's."""
    folders = [Path.cwd() / "outputs"]
    if where.artifact_location and where.artifact_location.startswith("file:"):
        from urllib.parse import unquote, urlparse

        folders.append(Path(unquote(urlparse(where.artifact_location).path)).parent)
    return list(dict.fromkeys(folders))


def reopen(tracker: Recorder, source: str) -> None:
    """The checkpoint's run, RUNNING again and owned by this process. A run that is still RUNNING in a
    live process of this host is refused; one whose process died without ending it (SIGKILL) says so
    in the tag ``runner.interrupted``, as a run ended KILLED by a signal does (runner.tracking.writer.Writer.reopen)."""
    tracker.reopen(source)


#: ``sink(metrics, step)``, as ``runner.train.MetricSink``
Sink = Callable[[Mapping[str, float], int], None]


def continue_history(tracker: Recorder, step: int) -> Sink:
    """Where the resumed run logs its metrics, so that each history ends up exactly as the
    uninterrupted run's: the store's points after ``step`` deleted (SQLAlchemy stores), or left out
    of what the run writes (other stores). See the module's docstring."""
    found = tracker.continue_after(step)
    if not found.get("count"):
        return tracker.log_metrics
    if found["deleted"]:
        log.info(
            "deleted the %d metric points the interrupted process logged after step %d (%s): the resumed run logs them again",
            found["count"],
            step,
            ", ".join(found["keys"]),
        )
        return tracker.log_metrics
    log.info(
        "the store keeps the %d metric points the interrupted process logged after step %d; the resumed run leaves them out "
        "and checks that it computes the same values",
        found["count"],
        step,
    )
    return Continuation(tracker, {key: {int(s): v for s, v in points.items()} for key, points in found["later"].items()})


class Continuation:
    """A metric sink that leaves out the points the store already has at a metric's step (logged
    by the interrupted process after its checkpoint), checking them against what this run computes."""

    def __init__(self, tracker: Recorder, stored: dict[str, dict[int, float]]):
        self.tracker, self.stored = tracker, stored
        self.mismatch: str | None = None

    def __call__(self, metrics: Mapping[str, float], step: int) -> None:
        new = {}
        for key, value in metrics.items():
            known = self.stored.get(key)
            if known is None or step not in known:
                new[key] = value
            elif not key.startswith("time/") and not same(known[step], float(value)) and self.mismatch is None:
                self.mismatch = f"{key} at step {step}: stored {known[step]!r}, recomputed {float(value)!r}"
                log.warning(
                    "resume: %s; this process computes differently from the interrupted one (another machine, "
                    "BLAS or NumPy?): the stored points are kept",
                    self.mismatch,
                )
                self.tracker.set_tags({"runner.resume.mismatch": self.mismatch})
        if new:
            self.tracker.log_metrics(new, step)


def same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def in_store(tracker: Recorder) -> None:
    """Return once every write sent to the run's store is in it (the writer carries requests out in order)."""
    tracker.in_store()
