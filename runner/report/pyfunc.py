"""The trained network as an MLflow pyfunc model: ``mlflow.pyfunc.load_model(uri).predict(x)``.

Logged to the run as an MLflow 3 logged model named ``model``: ``runs:/<run id>/model`` and
``models:/<model id>`` (the run's tag ``runner.model_id``) both load it. Its folder holds

    artifacts/model.npz            the weights and buffers by parameter name (loaded with allow_pickle=False)
    artifacts/config.resolved.yaml the run's resolved config: the model section rebuilds the layers
    artifacts/model.json           the dataset's Meta (task, input shape, classes), dtype and how to read outputs
    runner_model.py                MLflow's "model from code": hands it ``runner.pyfunc.RunnerModel``

plus MLmodel (signature, input example) and requirements.txt (numpy, runner). Nothing is pickled.
Loading rebuilds the network from the installed plugins (``load_registry`` + ``build_model``, as a
run does) and copies the weights in: it needs numpy and this project (with the plugins the run used).

``predict(x, params=None)``: ``x`` is an array of the run's dtype (float32 by default; MLflow's
signature check refuses float64) or a pandas DataFrame, of shape (n, features), e.g. (n, 784) for
MNIST, (n, 4) for iris. It returns

- classification / binary: the predicted class indices, int64 of shape (n,);
  ``params={"output": "probabilities"}``: class probabilities, (n, classes) (binary: (n, 1), the
  probability of class 1) when the outputs can be read so: after a final softmax (sigmoid) layer,
  or trained with softmax cross-entropy, nll, binary cross-entropy or bce with logits;
  ``params={"output": "scores"}``: the network's raw outputs (logits or probabilities, as trained);
- regression: the predicted values, (n, outputs).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from runner.core.evaluation import eval_rows

log = logging.getLogger("runner.pyfunc")

#: how a classifier's raw outputs become probabilities, by loss: the built-ins whose reading is known
PROBABILITIES = {
    "softmax_cross_entropy": "softmax",
    "nll": "identity",
    "binary_cross_entropy": "identity",
    "bce_with_logits": "sigmoid",
}
OUTPUTS = ("classes", "probabilities", "scores")
#: artifact path of the model in the run (``runs:/<run id>/model``) and the logged model's name
NAME = "model"


def describe(meta, dtype: str, loss_name: str, binary_threshold: float, last_layer: str | None = None) -> dict:
    """model.json: what predict needs besides the weights and the config.

    Outputs read as probabilities: as they are after a final softmax (or sigmoid) layer; else as the
    loss reads them (``PROBABILITIES``); unknown otherwise (e.g. hinge, or a third-party loss).
    """
    final = {"softmax": "identity"} if meta.task == "classification" else {"sigmoid": "identity"} if meta.task == "binary" else {}
    return {
        "format": 1,
        "meta": {**asdict(meta), "input_shape": list(meta.input_shape), "classes": list(meta.classes)},
        "dtype": str(dtype),
        "loss": loss_name,
        "binary_threshold": float(binary_threshold),
        "probabilities": final.get(str(last_layer)) or PROBABILITIES.get(loss_name),
    }


def rebuild(weights: Path, config: Path, described: dict):
    """The trained Sequential: layers from the config and the installed plugins, weights from the .npz."""
    from omegaconf import DictConfig, OmegaConf

    from runner.api import Meta, RunnerError
    from runner.core.model import build_model, layer_configs
    from runner.plugins.discovery import load_registry

    cfg = OmegaConf.load(config)
    model_config = OmegaConf.to_container(cfg.model, resolve=True) if isinstance(cfg, DictConfig) and "model" in cfg else None
    if not isinstance(cfg, DictConfig) or not isinstance(model_config, dict):
        raise RunnerError(f"{config}: expected the run's resolved config, a mapping with a model section")
    meta_fields = dict(described["meta"])
    meta_fields.update(input_shape=tuple(meta_fields["input_shape"]), classes=tuple(meta_fields["classes"]))
    if meta_fields.get("image_shape") is not None:
        meta_fields["image_shape"] = tuple(meta_fields["image_shape"])
    meta = Meta(**meta_fields)
    registry = load_registry(cfg.get("plugins"))
    dtype = np.dtype(described["dtype"])
    model = build_model(
        layer_configs({str(k): v for k, v in model_config.items()}, registry), registry, meta, np.random.default_rng(0), dtype
    )
    with np.load(weights, allow_pickle=False) as saved:
        stored = {name: saved[name] for name in saved.files}
    arrays = {**model.params, **model.buffers}
    if set(stored) != set(arrays):
        raise RunnerError(
            f"{weights}: the weights ({', '.join(sorted(stored))}) do not match the model the config builds "
            f"({', '.join(sorted(arrays))})"
        )
    for name, array in arrays.items():
        if stored[name].shape != array.shape:
            raise RunnerError(f"{weights}: {name} has shape {stored[name].shape}, the model expects {array.shape}")
        array[...] = stored[name]  # in place: the layers hold these arrays
    return model, meta


def outputs_of(model, x: np.ndarray, batch_size: int | None = None) -> np.ndarray:
    """The network's raw outputs in evaluation mode, in batches (by default the evaluation's chunks:
    runner.core.evaluation.eval_rows, ~100 rows for a ConvNet, 8192 for an MLP)."""
    batch_size = batch_size or eval_rows(model)
    return (
        np.concatenate([model.forward(x[i : i + batch_size], training=False) for i in range(0, len(x), batch_size)])
        if len(x)
        else model.forward(x, training=False)
    )


def read_outputs(raw: np.ndarray, described: dict, output: str = "classes") -> np.ndarray:
    """Raw network outputs -> what ``predict`` returns (see the module docstring)."""
    task = described["meta"]["task"]
    if output not in OUTPUTS:
        raise ValueError(f"params output: expected one of {', '.join(OUTPUTS)}, got {output!r}")
    if task == "regression" or output == "scores":
        return raw
    if output == "classes":
        if task == "binary":
            return (raw[:, 0] >= described["binary_threshold"]).astype(np.int64)
        return raw.argmax(axis=1).astype(np.int64)
    how = described.get("probabilities")
    if how == "identity":
        return raw
    if how == "sigmoid":
        return 1.0 / (1.0 + np.exp(-raw))
    if how == "softmax":
        shifted = np.exp(raw - raw.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)
    raise ValueError(
        f"params output='probabilities': unknown for a model trained with loss {described.get('loss')!r}; "
        "use output='scores' for the raw outputs"
    )


def as_array(model_input: Any, dtype: np.dtype, input_shape: tuple[int, ...]) -> np.ndarray:
    """A DataFrame, array or nested list of shape (n, features) or (n, *input_shape) as a C-contiguous
    array of ``dtype`` and shape (n, *input_shape)."""
    input_shape = tuple(input_shape)
    width = int(np.prod(input_shape))
    if hasattr(model_input, "to_numpy"):
        model_input = model_input.to_numpy()
    x = np.asarray(model_input, dtype=dtype)
    if x.shape == input_shape or (x.ndim == 1 and x.shape[0] == width):
        x = x.reshape(1, *input_shape)  # one sample
    if x.shape[1:] != input_shape:
        if x.ndim != 2 or x.shape[1] != width:
            raise ValueError(
                f"expected inputs of shape (n, {width})"
                + (f" or (n, {', '.join(map(str, input_shape))})" if len(input_shape) > 1 else "")
                + f", got {x.shape}"
            )
        x = x.reshape(-1, *input_shape)
    return np.ascontiguousarray(x)


def __getattr__(name: str):
    """``RunnerModel``, defined on first use: its base class is MLflow's (heavy), and a run's process
    uses this module's other functions without importing MLflow (the sidecar logs the model)."""
    if name == "RunnerModel":
        return _runner_model()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@functools.cache
def _runner_model() -> type:
    from mlflow.pyfunc import PythonModel

    class RunnerModel(PythonModel):
        """An MLflow pyfunc around a runner network (see the module docstring)."""

        def load_context(self, context) -> None:
            self.described = json.loads(Path(context.artifacts["meta"]).read_text())
            self.model, self.meta = rebuild(Path(context.artifacts["weights"]), Path(context.artifacts["config"]), self.described)
            self.dtype = np.dtype(self.described["dtype"])

        def predict(self, context, model_input: np.ndarray, params: dict[str, Any] | None = None) -> np.ndarray:
            x = as_array(model_input, self.dtype, tuple(self.model.shapes[0]))  # images for a conv net
            output = (params or {}).get("output", "classes")
            return read_outputs(outputs_of(self.model, x), self.described, output)

    RunnerModel.__module__ = __name__
    RunnerModel.__qualname__ = "RunnerModel"
    return RunnerModel


def log_model(
    client,
    run_id: str,
    experiment_id: str,
    *,
    weights: Path,
    config: Path,
    described: dict,
    example: np.ndarray,
    predicted: np.ndarray,
    workdir: Path,
) -> str:
    """Log the pyfunc model to the run ``run_id`` as MLflow 3 logged model ``model`` (``runs:/<run>/model``
    and ``models:/<model id>`` both load it); returns the model id.

    Only MlflowClient calls: no fluent active run is started, so the run's status is left to its
    owner (``mlflow.start_run(run_id=...)`` would mark it FINISHED on exit).
    """
    import mlflow.pyfunc
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus
    from mlflow.models import Model, infer_signature

    began = time.perf_counter()
    meta_path = workdir / "model.json"
    meta_path.write_text(json.dumps(described, indent=2) + "\n")
    signature = infer_signature(
        example, predicted, params={"output": "classes"} if described["meta"]["task"] != "regression" else None
    )
    logged = client.create_logged_model(
        experiment_id,
        name=NAME,
        source_run_id=run_id,
        tags={"runner.dataset": described["meta"]["name"], "runner.loss": described["loss"]},
        model_type=f"runner {described['meta']['task']}",
    )
    try:
        path = workdir / "pyfunc"
        mlflow_model = Model(
            artifact_path=logged.artifact_location, run_id=run_id, model_uuid=logged.model_id, model_id=logged.model_id
        )
        with quiet_copies(), no_requirements_check():
            mlflow.pyfunc.save_model(
                path,
                python_model=str(model_code(workdir)),
                mlflow_model=mlflow_model,
                artifacts={"weights": str(weights), "config": str(config), "meta": str(meta_path)},
                signature=signature,
                input_example=example,
                pip_requirements=requirements(),
            )
        client.log_model_artifacts(logged.model_id, str(path))
        client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=0)])
        client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
    except BaseException:
        client.finalize_logged_model(logged.model_id, LoggedModelStatus.FAILED)
        raise
    log.debug("pyfunc model %s logged in %.2f s", logged.model_id, time.perf_counter() - began)
    return logged.model_id


#: the model's code (MLflow "models from code"): no pickle, the class comes from the installed project
MODEL_CODE = """\
# The MLflow pyfunc model of a runner run: runner.pyfunc.RunnerModel rebuilds the network from
# artifacts/ (model.npz, config.resolved.yaml, model.json) with the installed plugins.
import mlflow.models

from runner.report.pyfunc import RunnerModel

mlflow.models.set_model(RunnerModel())
"""


def model_code(workdir: Path) -> Path:
    path = workdir / "runner_model.py"
    path.write_text(MODEL_CODE)
    return path


@contextmanager
def quiet_copies():
    """No "Downloading artifacts" progress bars while MLflow copies local files (unless the user set it)."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    if key in os.environ:
        yield
        return
    os.environ[key] = "false"
    try:
        yield
    finally:
        os.environ.pop(key, None)


@contextmanager
def no_requirements_check():
    """save_model without MLflow's check that this environment satisfies the model's requirements: they
    are ``requirements()``, the installed versions themselves, and mlflow pinned to the running one, so
    the check cannot fail, and it costs ~0.2 s (importlib_metadata.packages_distributions reads the file
    list of every installed distribution). Should MLflow move the check, it simply runs."""
    import mlflow.utils.environment as environment

    name = "warn_dependency_requirement_mismatches"
    check = getattr(environment, name, None)
    if check is None:
        yield
        return
    setattr(environment, name, lambda requirements: None)
    try:
        yield
    finally:
        setattr(environment, name, check)


def requirements() -> list[str]:
    """numpy and this project (which brings mlflow and the built-in plugins), pinned to what trained the model."""
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for name in ("numpy", "runner"):
        try:
            pins.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            pins.append(name)
    return pins
