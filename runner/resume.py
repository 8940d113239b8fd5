"""What a checkpoint holds for a run, and how a run continues from one (``+resume=<run id or path>``).

A resumed run continues the same MLflow run, from the step after the checkpoint, with the
parameters, optimizer state, layer and batch RNG states and loss window it had: it ends with exactly
the metrics the uninterrupted run would have had.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from runner import checkpoint
from runner.api import RunnerError
from runner.tracking import Target, open_client

ARTIFACT_DIR = "checkpoints"


def config_for_hash(config: dict) -> dict:
    """The config that must match between a checkpoint and its resumption (``resume`` itself aside)."""
    return {k: v for k, v in config.items() if k != "resume"}


def state_of(model, optimizer, training, config: dict, run_id: str, uri: str) -> dict:
    layer_rngs = {str(i): layer.rng.bit_generator.state for i, layer in enumerate(model.layers)
                  if isinstance(getattr(layer, "rng", None), np.random.Generator)}
    return {
        "run_id": run_id, "tracking_uri": uri,
        "config": config_for_hash(config), "config_hash": checkpoint.config_hash(config_for_hash(config)),
        "params": model.params, "buffers": model.buffers, "layer_rngs": layer_rngs,
        "optimizer": optimizer.state_dict(), "training": training.state_dict(),
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
    saved, now = flat(state["config"]), flat(config_for_hash(config))
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
    """The checkpoint state for ``resume`` (a checkpoint file, a directory holding one, or a run id
    in the store), and a description of where it came from."""
    path = Path(str(resume)).expanduser()
    if path.is_dir():
        path = path / checkpoint.FILE
    if path.is_file():
        return checkpoint.load(path), str(path)
    client = open_client(where.uri)
    try:
        client.get_run(str(resume))
    except Exception:
        raise RunnerError(f"resume={resume}: neither a checkpoint file nor a run id in {where.uri}") from None
    try:
        local = client.download_artifacts(str(resume), f"{ARTIFACT_DIR}/{checkpoint.FILE}", tempfile.mkdtemp(prefix="runner-resume-"))
    except Exception as e:
        raise RunnerError(f"resume={resume}: the run has no {ARTIFACT_DIR}/{checkpoint.FILE} artifact ({type(e).__name__})") from None
    return checkpoint.load(Path(local)), f"run {resume}"
