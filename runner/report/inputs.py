"""The run's train/val/test splits as MLflow dataset inputs: name, digest, source and profile.

Only the rows MLflow's NumPy digest reads travel to where MLflow runs (the sidecar): ``log_inputs`` there
stands the splits in by arrays of their real shape and dtype whose first rows are the real ones.
"""

from __future__ import annotations

import json

import numpy as np

from runner.tracking.store import retrying


def log_dataset_inputs(tracker, splits, cfg) -> None:
    """The train/val/test splits as MLflow dataset inputs: name, digest, source (the dataset plugin and its
    options), and the profile (shapes) and schema MLflow records for a NumPy dataset.

    The digest is MLflow's own NumPy digest (``numpy_digest``): it reads only the first rows, so only
    those travel to where MLflow runs (``log_inputs``, in the sidecar) with each array's shape and dtype."""
    from omegaconf import OmegaConf

    dataset_cfg = OmegaConf.to_container(cfg.dataset, resolve=True)
    source_tags = {
        "runner.dataset": str(cfg.dataset.name),
        "runner.dataset.options": json.dumps(dataset_cfg),
        "runner.data_dir": str(cfg.get("data_dir") or ""),
    }
    described = [
        (context, _head(flat(split.x, splits.meta)), _head(split.y))
        for context, split in (("train", splits.train), ("val", splits.val), ("test", splits.test))
        if len(split)
    ]
    tracker.submit(log_inputs, splits.meta.name, source_tags, described)


def flat(x: np.ndarray, meta) -> np.ndarray:
    """Samples as the dataset gives them (``meta.input_shape``), whatever shape the model took them in
    (a conv net's images): the dataset inputs and the pyfunc model's input are the same for every model."""
    return x.reshape(len(x), *meta.input_shape)


#: how many leading elements of an array MLflow's NumPy digest reads (mlflow.data.digest_utils.MAX_ROWS)
DIGEST_ELEMENTS = 10_000


def _head(array: np.ndarray) -> tuple[np.ndarray, tuple[int, ...], str]:
    """(the rows that hold the first ``DIGEST_ELEMENTS`` elements, the full shape, the dtype) of an array."""
    row = int(np.prod(array.shape[1:])) if array.ndim > 1 else 1
    head = array[: -(-DIGEST_ELEMENTS // row)] if array.ndim and row else array
    return np.ascontiguousarray(head), tuple(array.shape), str(array.dtype)


def log_inputs(client, run_id: str, experiment_id: str, name: str, source_tags: dict, described: list) -> None:
    """(In the sidecar) ``described``'s splits as the run's dataset inputs. Each split stands in as a
    zero-strided array of its shape and dtype (no data: MLflow reads the shape for the profile and the
    dtype for the schema); the digest comes from its first rows."""
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.numpy_dataset import from_numpy
    from mlflow.entities import DatasetInput, InputTag

    source = CodeDatasetSource(tags=source_tags)
    inputs = []
    for context, x, y in described:
        features, targets = _stand_in(*x), _stand_in(*y)
        digest = numpy_digest(features, targets, heads=(x[0], y[0]))
        dataset = from_numpy(features, source=source, targets=targets, name=name, digest=digest)
        inputs.append(DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", context)]))
    for attempt in range(3):
        try:
            retrying(lambda: client.log_inputs(run_id, datasets=inputs), "log dataset inputs")
            return
        except Exception as e:
            if not logged_meanwhile(e) or attempt == 2:
                raise
            # another run of the experiment logged the same dataset at the same moment: it is there now, and found


def logged_meanwhile(error: Exception) -> bool:
    """MLflow looks for a run's datasets in the experiment, then inserts those it did not find: two runs of one experiment
    logging the same dataset at once (parallel sweep jobs, runs started together) both insert it, and the second one's
    transaction fails on the datasets' unique key (SQLite: ``UNIQUE constraint failed: datasets...``; PostgreSQL:
    ``duplicate key value violates unique constraint``), rolled back whole."""
    text = str(error).lower()
    return "datasets" in text and ("unique constraint" in text or "duplicate key" in text)


def _stand_in(head: np.ndarray, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """A read-only array of ``shape`` and ``dtype`` that holds one element (all entries alias it)."""
    return np.lib.stride_tricks.as_strided(np.zeros(1, dtype=dtype), shape=shape, strides=(0,) * len(shape), writeable=False)


def numpy_digest(features: np.ndarray, targets: np.ndarray | None = None, heads: tuple | None = None) -> str:
    """The digest ``mlflow.data.from_numpy`` computes (``mlflow.data.digest_utils.compute_numpy_digest``):
    an md5 over the first ``MAX_ROWS`` (10,000) elements of each array in C order and its full shape,
    so it changes with the shape and with those first values (the first 13 MNIST images). MLflow copies
    the whole flattened array to read them (0.1 s for MNIST's training split); this flattens only the
    rows that hold them (``heads``: those rows, when the arrays are stand-ins of the right shape)."""
    import pandas as pd
    from mlflow.data.digest_utils import MAX_ROWS, get_normalized_md5_digest

    assert MAX_ROWS == DIGEST_ELEMENTS, f"MLflow's digest now reads {MAX_ROWS} elements: update DIGEST_ELEMENTS"
    elements: list = []
    for i, array in enumerate((features, targets)):
        if array is None:
            continue
        array = np.asarray(array)
        head = (heads[i] if heads is not None else _head(array)[0]).flatten()[:MAX_ROWS]
        try:
            elements.append(pd.util.hash_array(head))
        except TypeError:  # as MLflow: an array pandas cannot hash counts by its size
            elements.append(np.int64(head.size))
        elements.extend(np.int64(n) for n in array.shape)
    return get_normalized_md5_digest(elements)
