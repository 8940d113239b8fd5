"""The contract classes of runner.testing: every built-in plugin passes them, and each check
fails on a plugin broken in exactly its one way (and only that check fails).

The second half writes small test modules with a deliberately broken plugin and runs pytest on
them in-process (the ``pytester`` fixture, enabled in conftest.py).
"""

from __future__ import annotations

import re
import textwrap

import pytest
from conftest import SHARED_DATA

from runner.builtins.datasets import runner_datasets
from runner.builtins.layers import FAST as FAST_LAYERS
from runner.builtins.layers import INITS, runner_layers
from runner.builtins.losses import runner_losses
from runner.builtins.optimizers import FAST as FAST_OPTIMIZERS
from runner.builtins.optimizers import runner_optimizers
from runner.testing import DatasetContract, LayerContract, LossContract, MergeLayerContract, OptimizerContract

LAYER_FACTORIES = {spec.name: spec.factory for spec in runner_layers()}
#: each registered fast variant -> the reference class it stands for (layers.FAST, optimizers.FAST)
REFERENCE_OF = {fast: reference for reference, fast in (*FAST_LAYERS.items(), *FAST_OPTIMIZERS.items())}
LOSS_FACTORIES = {spec.name: spec.factory for spec in runner_losses()}
OPTIMIZER_FACTORIES = {spec.name: spec.factory for spec in runner_optimizers()}
DATASET_FACTORIES = {spec.name: spec.factory for spec in runner_datasets()}


def contract_class(contract: type, case: str, factory, **attributes) -> type:
    """``Test<Kind><Case>``, a subclass of ``contract``, put in this module for pytest to collect."""
    words = re.split(r"[-_.]", case)
    name = "Test" + contract.__name__.removesuffix("Contract") + "".join(w.capitalize() for w in words)
    cls = type(name, (contract,), {"__module__": __name__, "factory": factory, **attributes})
    globals()[name] = cls
    return cls


# --------------------------------------------------------------------------- every built-in layer

# case -> (registered name, options, input shape of one sample, other attributes); options as in test_layers.GRADCHECK
LAYERS = {
    **{f"linear-{init}": ("linear", {"out": 5, "init": init, "bias": 0.1}, (7,), {}) for init in INITS},
    "relu": ("relu", {}, (7,), {}),
    "leaky_relu": ("leaky_relu", {"alpha": 0.1}, (7,), {}),
    "elu": ("elu", {}, (7,), {}),
    "elu-0.5": ("elu", {"alpha": 0.5}, (7,), {}),
    "gelu": ("gelu", {}, (7,), {}),
    "gelu-tanh": ("gelu", {"approximate": "tanh"}, (7,), {}),
    "sigmoid": ("sigmoid", {}, (7,), {}),
    "tanh": ("tanh", {}, (7,), {}),
    "softplus": ("softplus", {}, (7,), {}),
    "softplus-threshold": ("softplus", {"beta": 2.0, "threshold": 1.5}, (7,), {}),
    "swish": ("swish", {"beta": 1.7}, (7,), {}),
    "silu": ("silu", {}, (7,), {}),
    "identity": ("identity", {}, (7,), {}),
    "softmax": ("softmax", {}, (2, 5), {}),
    "dropout": ("dropout", {"p": 0.3}, (3, 7), {}),
    "flatten": ("flatten", {}, (2, 3, 2), {}),
    "batchnorm": ("batchnorm", {"momentum": 0.3}, (5,), {"per_sample": False}),  # batch statistics in training
    "layernorm": ("layernorm", {}, (3, 6), {}),
    "conv2d": ("conv2d", {"out": 3, "kernel": 3, "padding": 1}, (2, 5, 5), {}),
    "conv2d-strided": ("conv2d", {"out": 2, "kernel": [2, 3], "stride": 2, "bias": False}, (3, 6, 7), {}),
    "maxpool2d": ("maxpool2d", {}, (2, 4, 6), {}),
    "maxpool2d-overlapping": ("maxpool2d", {"kernel": 3, "stride": 2, "padding": 1}, (2, 7, 7), {}),
    "avgpool2d": ("avgpool2d", {"kernel": 3, "stride": 2, "padding": 1}, (2, 7, 7), {}),
    "global_avg_pool": ("global_avg_pool", {}, (3, 4, 5), {}),
    "batchnorm2d": ("batchnorm2d", {"momentum": 0.3}, (3, 4, 4), {"per_sample": False}),
    "scale": ("scale", {"init": 1.5}, (3, 7), {}),
    "bias": ("bias", {"init": -0.5}, (3, 7), {}),
}
for case, (name, options, shape, attributes) in LAYERS.items():
    contract_class(LayerContract, case, LAYER_FACTORIES[name], options=options, input_shape=shape, **attributes)
    if (reference := REFERENCE_OF.get(LAYER_FACTORIES[name])) is not None:  # what the fast variant stands for
        contract_class(LayerContract, f"{case}-reference", reference, options=options, input_shape=shape, **attributes)


# the graph's merge nodes (runner.api.MergeLayer): case -> (registered name, the shapes of the inputs)
MERGES = {
    "add": ("add", ((7,), (7,))),
    "add-three": ("add", ((3, 4), (3, 4), (3, 4))),
    "concat": ("concat", ((5,), (2,))),
    "concat-three": ("concat", ((2, 3), (2, 1), (2, 4))),
    "multiply": ("multiply", ((7,), (7,))),
    "multiply-three": ("multiply", ((6,), (6,), (6,))),
}
for case, (name, shapes) in MERGES.items():
    contract_class(MergeLayerContract, case, LAYER_FACTORIES[name], input_shapes=shapes)

# --------------------------------------------------------------------------- every built-in loss

BINARY = {"target": "binary", "pred_shape": (6, 1)}
# case -> (registered name, attributes)
LOSSES = {
    "mse": ("mse", {}),
    "sum_squared": ("sum_squared", {}),
    "l1": ("l1", {}),
    "softmax_cross_entropy": ("softmax_cross_entropy", {"target": "class_indices"}),
    "softmax_cross_entropy-one_hot": ("softmax_cross_entropy", {"target": "one_hot"}),
    "nll": ("nll", {"pred_kind": "softmax", "target": "class_indices"}),
    "nll-one_hot": ("nll", {"pred_kind": "softmax", "target": "one_hot"}),
    "binary_cross_entropy": ("binary_cross_entropy", {"pred_kind": "probability", **BINARY}),
    "bce_with_logits": ("bce_with_logits", BINARY),
    "huber": ("huber", {}),
    "huber-0.5": ("huber", {"options": {"delta": 0.5}}),
    "hinge": ("hinge", BINARY),
}
for case, (name, attributes) in LOSSES.items():
    contract_class(LossContract, case, LOSS_FACTORIES[name], **attributes)

# --------------------------------------------------------------------------- every built-in optimizer

# one parameter above runner.builtins.optimizers_fast.CHUNK entries, so the piece-by-piece update is covered too
PARAM_SHAPES = {"0.linear.W": (300, 300), "0.linear.b": (300,), "1.linear.W": (300, 3), "2.prelu.alpha": (1,)}
OPTIMIZERS = {
    "sgd": {"lr": 0.1},
    "momentum": {"lr": 0.05, "momentum": 0.9},
    "nesterov": {"lr": 0.05, "momentum": 0.9},
    "adagrad": {"lr": 0.1},
    "rmsprop": {"lr": 0.01},
    "adam": {"lr": 0.01, "beta1": 0.8, "beta2": 0.99},
    "adamw": {"lr": 0.01},
}
for name, options in OPTIMIZERS.items():
    contract_class(OptimizerContract, name, OPTIMIZER_FACTORIES[name], options=options, param_shapes=PARAM_SHAPES)
    contract_class(
        OptimizerContract,
        f"{name}-wd",
        OPTIMIZER_FACTORIES[name],
        options={**options, "weight_decay": 0.05},
        param_shapes=PARAM_SHAPES,
    )
    reference = REFERENCE_OF[OPTIMIZER_FACTORIES[name]]  # the fast variant is registered; its reference too
    contract_class(OptimizerContract, f"{name}-reference", reference, options=options, param_shapes=PARAM_SHAPES)

# --------------------------------------------------------------------------- the built-in datasets that need no download


class TestDatasetIris(DatasetContract):
    factory = DATASET_FACTORIES["iris"]


class TestDatasetIrisStandardized(DatasetContract):
    factory = DATASET_FACTORIES["iris"]
    options = {"standardize": True}


class TestDatasetIrisFixedSplit(DatasetContract):
    factory = DATASET_FACTORIES["iris"]
    options = {"split_seed": 3}
    seed_changes_splits = False  # split_seed fixes the split whatever the run's seed


class TestDatasetIrisBinary(DatasetContract):
    factory = DATASET_FACTORIES["iris_binary"]


class TestDatasetLinear(DatasetContract):
    factory = DATASET_FACTORIES["linear"]
    options = {"noise": 0.1}


class TestDatasetRegression(DatasetContract):
    factory = DATASET_FACTORIES["regression"]


class TestDatasetSpirals(DatasetContract):
    factory = DATASET_FACTORIES["spirals"]


class TestDatasetSpiralsFiveArms(DatasetContract):
    factory = DATASET_FACTORIES["spirals"]
    options = {"classes": 5, "noise": 0.0}


@pytest.mark.skipif(not (SHARED_DATA / "mnist").is_dir(), reason="needs MNIST in ../shared/data/mnist")
class TestDatasetMnist(DatasetContract):
    factory = DATASET_FACTORIES["mnist"]

    def data_dir(self, tmp_path):
        return SHARED_DATA


NEEDS_A_DOWNLOAD = {"fashion_mnist"}


def test_every_built_in_plugin_has_its_contract_class():
    tested = {c.factory for c in globals().values() if isinstance(c, type) and c.__name__.startswith("Test")}
    for kind, factories, skipped in [
        ("layer", LAYER_FACTORIES, set()),
        ("loss", LOSS_FACTORIES, set()),
        ("optimizer", OPTIMIZER_FACTORIES, set()),
        ("dataset", DATASET_FACTORIES, NEEDS_A_DOWNLOAD),
    ]:
        untested = {name for name, factory in factories.items() if factory not in tested} - skipped
        assert not untested, f"{kind}s without a contract class: {sorted(untested)}"


def test_the_contracts_themselves_are_not_collected():
    for contract in (LayerContract, LossContract, OptimizerContract, DatasetContract):
        assert contract.__test__ is False
    assert globals()["TestLayerRelu"].__test__ is True and TestDatasetIris.__test__ is True


# --------------------------------------------------------------------------- each check fails on its broken plugin

LAYER_PRELUDE = '''
import numpy as np
from runner.api import Layer
from runner.testing import LayerContract


class Scale(Layer):
    """y = tanh(x w + b), w and b per feature of the last axis: passes every check."""

    def build(self, input_shape, rng, dtype):
        n = input_shape[-1]
        self.params = {"w": rng.uniform(0.5, 1.5, n).astype(dtype), "b": (0.1 * rng.standard_normal(n)).astype(dtype)}
        self.grads = {key: np.zeros_like(p) for key, p in self.params.items()}
        return input_shape

    def forward(self, x, training):
        self.x = x
        self.y = np.tanh(x * self.params["w"] + self.params["b"])
        return self.y

    def backward(self, dout):
        dz = dout * (1.0 - self.y**2)
        axes = tuple(range(dz.ndim - 1))
        self.grads["w"][...] = np.sum(dz * self.x, axis=axes)
        self.grads["b"][...] = np.sum(dz, axis=axes)
        return dz * self.params["w"]


class ReLU(Layer):
    """y = max(0, x): passes every check."""

    kinks = (0.0,)

    def forward(self, x, training):
        self.mask = x > 0
        return x * self.mask

    def backward(self, dout):
        return dout * self.mask
'''

# check -> {how it is broken: the plugin ``Broken``}; the test class gets input_shape = (5,)
LAYER_BREAKS = {
    "test_input_gradient_matches_numerical": {
        "doubled_dx": """
            class Broken(Scale):
                def backward(self, dout):
                    return 2 * super().backward(dout)
        """,
    },
    "test_parameter_gradients_match_numerical": {
        "doubled_dw": """
            class Broken(Scale):
                def backward(self, dout):
                    dx = super().backward(dout)
                    self.grads["w"] *= 2
                    return dx
        """,
    },
    "test_build_returns_the_output_shape": {
        "one_too_many": """
            class Broken(Scale):
                def build(self, input_shape, rng, dtype):
                    super().build(input_shape, rng, dtype)
                    return (input_shape[-1] + 1,)
        """,
        "a_list": """
            class Broken(Scale):
                def build(self, input_shape, rng, dtype):
                    return list(super().build(input_shape, rng, dtype))
        """,
    },
    "test_forward_leaves_its_input_unchanged": {
        "relu_into_x": """
            class Broken(ReLU):
                def forward(self, x, training):
                    self.mask = x > 0
                    return np.multiply(x, self.mask, out=x)
        """,
    },
    "test_backward_leaves_dout_unchanged": {
        "relu_into_dout": """
            class Broken(ReLU):
                def backward(self, dout):
                    dout *= self.mask
                    return dout
        """,
    },
    "test_dtype_is_kept": {
        "float64_output": """
            class Broken(Scale):
                def forward(self, x, training):
                    return super().forward(x, training) * np.float64(1.0)  # a NumPy float64 scalar upcasts float32
        """,
    },
    "test_non_contiguous_input_gives_the_same_result": {
        "writes_through_ravel": """
            class Broken(Scale):
                def forward(self, x, training):
                    self.x = x
                    self.y = np.zeros_like(x)  # laid out like x
                    self.y.ravel()[:] = np.tanh(x * self.params["w"] + self.params["b"]).ravel()  # a copy unless C-contiguous
                    return self.y
        """,
    },
    "test_batch_of_one": {
        "squeezes": """
            class Broken(Scale):
                def forward(self, x, training):
                    return super().forward(np.squeeze(x), training)  # drops the batch axis of a batch of one
        """,
        "mixes_samples": """
            class Broken(Scale):  # centres over the batch, yet claims per_sample
                def forward(self, x, training):
                    return super().forward(x - x.mean(axis=0), training)

                def backward(self, dout):
                    dx = super().backward(dout)
                    return dx - dx.mean(axis=0)
        """,
    },
    "test_training_and_eval_modes_run": {
        "buffer_of_the_first_batch": """
            class Broken(Scale):
                buffer = None

                def forward(self, x, training):
                    if self.buffer is None:
                        self.buffer = np.empty_like(x)  # sized for the first batch only
                    np.multiply(x, self.params["w"], out=self.buffer)
                    self.buffer += self.params["b"]
                    self.x, self.y = x, np.tanh(self.buffer)
                    return self.y
        """,
    },
    "test_grads_match_params_and_are_filled_in_place": {
        "new_arrays": """
            class Broken(Scale):
                def backward(self, dout):
                    dx = super().backward(dout)
                    self.grads = {key: g.copy() for key, g in self.grads.items()}  # the runner holds the old ones
                    return dx
        """,
        "adds_up": """
            class Broken(Scale):
                def backward(self, dout):
                    before = {key: g.copy() for key, g in self.grads.items()}
                    dx = super().backward(dout)
                    for key, g in self.grads.items():
                        g += before[key]  # accumulates over calls instead of overwriting
                    return dx
        """,
    },
    "test_params_are_read_at_every_call": {
        "keeps_the_arrays_of_build": """
            class Broken(Scale):
                def build(self, input_shape, rng, dtype):
                    shape = super().build(input_shape, rng, dtype)
                    self.w, self.b = self.params["w"], self.params["b"]
                    return shape

                def forward(self, x, training):
                    self.x = x
                    self.y = np.tanh(x * self.w + self.b)
                    return self.y
        """,
    },
    "test_kinks_and_branches_are_declared": {
        "kinks_in_a_list": """
            class Broken(ReLU):
                kinks = [0.0]
        """,
        "float_branches": """
            class Broken(ReLU):
                def branches(self, x):
                    return (x > 0).astype(x.dtype)
        """,
    },
}

LAYERS_THAT_PASS = {
    "scale": """
        class TestPlugin(LayerContract):
            factory = Scale
            input_shape = (5,)
    """,
    "scale-images": """
        class TestPlugin(LayerContract):
            factory = Scale
            input_shape = (2, 3, 4)
            batch = 3
    """,
    "relu": """
        class TestPlugin(LayerContract):
            factory = ReLU
            input_shape = (5,)
    """,
    "relu-declared_in_place": """
        class InPlaceReLU(ReLU):
            def forward(self, x, training):
                self.mask = x > 0
                return np.multiply(x, self.mask, out=x)

            def backward(self, dout):
                dout *= self.mask
                return dout

        class TestPlugin(LayerContract):
            factory = InPlaceReLU
            input_shape = (5,)
            in_place = True
    """,
}

LOSS_PRELUDE = '''
import numpy as np
from runner.api import Loss
from runner.testing import LossContract


class Squared(Loss):
    """mean((pred - target)^2): passes every check."""

    def forward(self, pred, target):
        self.diff = pred - target
        return float(np.mean(self.diff**2))

    def backward(self):
        return 2.0 * self.diff / self.diff.size


class CrossEntropy(Loss):
    """Softmax cross-entropy on logits, targets as class indices or one-hot rows: passes every check."""

    accepts_class_indices = True

    def forward(self, pred, target):
        z = pred - pred.max(axis=1, keepdims=True)
        log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        self.p = np.exp(log_p)
        self.t = np.eye(pred.shape[1], dtype=pred.dtype)[target] if target.ndim == 1 else target
        return float(-(self.t * log_p).sum() / len(pred))

    def backward(self):
        return (self.p - self.t) / len(self.p)
'''

LOSS_BREAKS = {
    "test_backward_matches_numerical": {
        "doubled": """
            class Broken(Squared):
                def backward(self):
                    return 2 * super().backward()
        """,
    },
    "test_forward_returns_a_finite_scalar": {
        "an_array": """
            class Broken(Squared):
                def forward(self, pred, target):
                    self.diff = pred - target
                    return np.asarray(np.mean(self.diff**2))  # a 0-d array, not a float
        """,
    },
    "test_backward_has_the_shape_and_dtype_of_pred": {
        "squeezes": """
            class Broken(Squared):
                def backward(self):
                    return np.squeeze(super().backward())  # (1, 4) -> (4,) for a batch of one
        """,
        "float64": """
            class Broken(Squared):
                def backward(self):
                    return super().backward().astype(np.float64)
        """,
    },
    "test_pred_and_target_are_left_unchanged": {
        "clips_the_target": """
            class Broken(Squared):
                def forward(self, pred, target):
                    np.clip(target, -0.5, 0.5, out=target)  # into the caller's array
                    return super().forward(pred, target)
        """,
    },
    "test_reduction_is_declared_and_honoured": {
        "says_mean_but_sums": """
            class Broken(Squared):
                def forward(self, pred, target):
                    super().forward(pred, target)
                    return float(np.sum(self.diff**2))

                def backward(self):
                    return 2.0 * self.diff
        """,
        "unknown": """
            class Broken(Squared):
                reduction = "batchmean"
        """,
    },
    "test_binary_threshold_is_a_number": {
        "none": """
            class Broken(Squared):
                binary_threshold = None
        """,
    },
    "test_class_indices_and_one_hot_agree": {
        "indices_read_as_a_column": """
            class Broken(CrossEntropy):
                def forward(self, pred, target):
                    return super().forward(pred, np.asarray(target, dtype=pred.dtype).reshape(len(pred), -1))
        """,
    },
    "test_branches_are_declared": {
        "one_per_row": """
            class Broken(Squared):
                def branches(self, pred, target):
                    return np.all(pred > target, axis=1)  # one per sample, not per entry of pred
        """,
    },
    "test_backward_follows_the_last_forward": {
        "keeps_the_first": """
            class Broken(Squared):
                def forward(self, pred, target):
                    if not hasattr(self, "diff"):  # computed on the first call only
                        self.diff = pred - target
                    return float(np.mean((pred - target) ** 2))
        """,
    },
}
# the test class's attributes, where not the defaults
LOSS_ATTRIBUTES = {"indices_read_as_a_column": {"target": "one_hot"}}

LOSSES_THAT_PASS = {
    "squared": """
        class TestPlugin(LossContract):
            factory = Squared
    """,
    "cross_entropy-class_indices": """
        class TestPlugin(LossContract):
            factory = CrossEntropy
            target = "class_indices"
    """,
    "cross_entropy-one_hot": """
        class TestPlugin(LossContract):
            factory = CrossEntropy
            target = "one_hot"
    """,
}

OPTIMIZER_PRELUDE = '''
import types

import numpy as np
from runner.api import Optimizer
from runner.testing import OptimizerContract


class HeavyBall(Optimizer):
    """v <- mu v + g; theta <- theta - lr v: passes every check."""

    def __init__(self, lr=0.05, momentum=0.9):
        self.lr, self.momentum = lr, momentum
        self.v = {}

    def step(self, params, grads):
        for name, theta in params.items():
            v = self.v.setdefault(name, np.zeros_like(theta))
            v *= self.momentum
            v += grads[name]
            theta -= self.lr * v

    def state_dict(self):
        return {"lr": self.lr, "v": {name: v.copy() for name, v in self.v.items()}}

    def load_state_dict(self, state):
        self.lr = state["lr"]
        self.v = {name: np.array(v) for name, v in state["v"].items()}
'''

OPTIMIZER_BREAKS = {
    "test_step_updates_the_params_in_place": {
        "new_arrays": """
            class Broken(HeavyBall):
                def step(self, params, grads):
                    for name, theta in list(params.items()):
                        v = self.v.setdefault(name, np.zeros_like(theta))
                        v *= self.momentum
                        v += grads[name]
                        params[name] = theta - self.lr * v  # the model still holds the old array
        """,
    },
    "test_steps_lower_a_quadratic": {
        "ascends": """
            class Broken(HeavyBall):
                def step(self, params, grads):
                    super().step(params, {name: -g for name, g in grads.items()})
        """,
    },
    "test_state_dict_round_trip_continues_bitwise": {
        "forgets_the_momentum": """
            class Broken(HeavyBall):
                def state_dict(self):
                    return {"lr": self.lr}

                def load_state_dict(self, state):
                    self.lr = state["lr"]
        """,
    },
    "test_state_dict_is_a_snapshot": {
        "hands_out_its_buffers": """
            class Broken(HeavyBall):
                def state_dict(self):
                    return {"lr": self.lr, "v": self.v}
        """,
    },
    "test_state_dict_is_plain_data": {
        "holds_an_object": """
            class Broken(HeavyBall):
                def state_dict(self):
                    return {**super().state_dict(), "schedule": types.SimpleNamespace(lr=self.lr)}
        """,
    },
    "test_dtype_is_kept": {
        "float64_state": """
            class Broken(HeavyBall):
                def step(self, params, grads):
                    for name, theta in params.items():
                        self.v.setdefault(name, np.zeros(theta.shape))  # float64 whatever theta is
                    super().step(params, grads)
        """,
    },
    "test_grads_are_not_modified": {
        "clips_in_place": """
            class Broken(HeavyBall):
                def step(self, params, grads):
                    for g in grads.values():
                        np.clip(g, -1.0, 1.0, out=g)
                    super().step(params, grads)
        """,
    },
    "test_lr_is_read_at_every_step": {
        "keeps_the_first_lr": """
            class Broken(HeavyBall):
                def __init__(self, lr=0.05, momentum=0.9):
                    super().__init__(lr, momentum)
                    self.step_size = lr  # read once: a schedule that sets self.lr changes nothing

                def step(self, params, grads):
                    for name, theta in params.items():
                        v = self.v.setdefault(name, np.zeros_like(theta))
                        v *= self.momentum
                        v += grads[name]
                        theta -= self.step_size * v
        """,
    },
}

OPTIMIZERS_THAT_PASS = {
    "heavy_ball": """
        class TestPlugin(OptimizerContract):
            factory = HeavyBall
    """,
    "heavy_ball-lambda": """
        class TestPlugin(OptimizerContract):
            factory = lambda **options: HeavyBall(momentum=0.5, **options)  # a function is not bound to the test
            options = {"lr": 0.1}
            param_shapes = {"w": (2, 3, 4)}
    """,
}

DATASET_PRELUDE = '''
import collections

import numpy as np
from runner.api import Dataset, Meta, Split, Splits
from runner.testing import DatasetContract


class Blobs(Dataset):
    """Gaussian blobs in 2-D drawn from the run's seed, three classes (or two, binary): passes every check."""

    sizes = (30, 10, 10)

    def __init__(self, binary=False):
        self.binary = binary

    def rng(self, context):
        return np.random.default_rng(context.seed)

    def labels(self, n, rng):
        return rng.integers(0, 2 if self.binary else 3, n)

    def split(self, x, y):
        return Split(x, y)

    def meta(self):
        if self.binary:
            return Meta("blobs", (2,), 1, "binary", ("no", "yes"))
        return Meta("blobs", (2,), 3, "classification", ("a", "b", "c"))

    def load(self, context):
        rng = self.rng(context)
        parts = []
        for n in self.sizes:
            y = self.labels(n, rng)
            x = rng.standard_normal((n, 2)) + 2.0 * y[:, None]
            parts.append(self.split(x.astype(context.dtype), y))
        return Splits(*parts, meta=self.meta())
'''

DATASET_BREAKS = {
    "test_load_returns_splits": {
        "its_own_split": """
            Part = collections.namedtuple("Part", "x y")  # len(part) is 2, not the number of samples

            class Broken(Blobs):
                def split(self, x, y):
                    return Part(x, y)
        """,
    },
    "test_x_has_the_input_shape_and_the_context_dtype": {
        "always_float32": """
            class Broken(Blobs):
                def split(self, x, y):
                    return Split(x.astype(np.float32), y)
        """,
        "shape_against_meta": """
            class Broken(Blobs):
                def meta(self):
                    return Meta("blobs", (2, 1), 3, "classification")
        """,
    },
    "test_y_fits_the_task": {
        "labels_from_1": """
            class Broken(Blobs):
                def labels(self, n, rng):
                    return super().labels(n, rng) + 1
        """,
        "binary_as_plus_minus_1": """
            class Broken(Blobs):
                def __init__(self):
                    super().__init__(binary=True)

                def labels(self, n, rng):
                    return 2 * super().labels(n, rng) - 1
        """,
    },
    "test_train_split_is_not_empty": {
        "no_training_samples": """
            class Broken(Blobs):
                sizes = (0, 10, 10)
        """,
    },
    "test_same_seed_gives_identical_splits": {
        "unseeded": """
            class Broken(Blobs):
                def rng(self, context):
                    return np.random.default_rng()
        """,
    },
    "test_other_seed_gives_other_splits": {
        "ignores_the_seed": """
            class Broken(Blobs):
                def rng(self, context):
                    return np.random.default_rng(0)
        """,
    },
    "test_meta_describes_the_task": {
        "two_names_for_three_classes": """
            class Broken(Blobs):
                def meta(self):
                    return Meta("blobs", (2,), 3, "classification", ("a", "b"))
        """,
        "binary_with_two_outputs": """
            class Broken(Blobs):
                def __init__(self):
                    super().__init__(binary=True)

                def meta(self):
                    return Meta("blobs", (2,), 2, "binary")
        """,
    },
}

DATASETS_THAT_PASS = {
    "blobs": """
        class TestPlugin(DatasetContract):
            factory = Blobs
    """,
    "blobs-binary": """
        class TestPlugin(DatasetContract):
            factory = Blobs
            options = {"binary": True}
    """,
    "fixed": """
        class Fixed(Blobs):
            def rng(self, context):
                return np.random.default_rng(0)

        class TestPlugin(DatasetContract):
            factory = Fixed
            seed_changes_splits = False
    """,
    "reads_its_data_dir": """
        class FromFile(Dataset):
            def load(self, context):
                x = np.load(context.data_dir / "points.npy").astype(context.dtype)
                y = (x[:, 0] > 0).astype(np.int64)
                order = np.random.default_rng(context.seed).permutation(len(x))
                train, val, test = np.split(order, [12, 16])
                return Splits(Split(x[train], y[train]), Split(x[val], y[val]), Split(x[test], y[test]),
                              Meta("from_file", (3,), 1, "binary"))

        class TestPlugin(DatasetContract):
            factory = FromFile

            def data_dir(self, tmp_path):
                np.save(tmp_path / "points.npy", np.random.default_rng(1).standard_normal((20, 3)))
                return tmp_path
    """,
}

KINDS = {
    "layer": (LayerContract, LAYER_PRELUDE, LAYER_BREAKS, LAYERS_THAT_PASS, {"input_shape": (5,)}, {}),
    "loss": (LossContract, LOSS_PRELUDE, LOSS_BREAKS, LOSSES_THAT_PASS, {}, LOSS_ATTRIBUTES),
    "optimizer": (OptimizerContract, OPTIMIZER_PRELUDE, OPTIMIZER_BREAKS, OPTIMIZERS_THAT_PASS, {}, {}),
    "dataset": (DatasetContract, DATASET_PRELUDE, DATASET_BREAKS, DATASETS_THAT_PASS, {}, {}),
}


def checks(contract: type) -> list[str]:
    return sorted(name for name in dir(contract) if name.startswith("test_"))


@pytest.fixture
def run_module(pytester, monkeypatch):
    """``run_module(prelude, plugin)``: pytest, in this process, on a test module of ``prelude`` and
    ``plugin`` (which defines ``TestPlugin``). Without the installed pytest plugins (hypothesis,
    benchmark...): they check nothing here, and loading them made each run 6 times slower."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")

    def run(prelude: str, plugin: str):
        pytester.makepyfile(test_plugin=textwrap.dedent(prelude) + "\n\n" + textwrap.dedent(plugin))
        return pytester.runpytest_inprocess("-p", "no:cacheprovider", "-q")

    return run


def failed_checks(result) -> list[str]:
    _, _, failed = result.reprec.listoutcomes()
    return [report.nodeid.rsplit("::", 1)[-1] for report in failed]


BROKEN = [(kind, check, how) for kind, (_, _, breaks, *_) in KINDS.items() for check, ways in breaks.items() for how in ways]
PASSING = [(kind, case) for kind, (_, _, _, good, *_) in KINDS.items() for case in good]


@pytest.mark.parametrize(
    "kind, check, how", BROKEN, ids=[f"{kind}-{check.removeprefix('test_')}-{how}" for kind, check, how in BROKEN]
)
def test_each_check_fails_on_a_plugin_broken_that_way_and_only_it(run_module, kind, check, how):
    contract, prelude, breaks, _, attributes, special = KINDS[kind]
    attributes = {**attributes, **special.get(how, {})}
    test_class = "\n".join(
        [
            f"class TestPlugin({contract.__name__}):",
            "    factory = Broken",
            *(f"    {key} = {value!r}" for key, value in attributes.items()),
        ]
    )
    result = run_module(prelude, textwrap.dedent(breaks[check][how]) + "\n\n" + test_class)
    report = result.stdout.str()[-4000:]
    assert failed_checks(result) == [check], report
    result.assert_outcomes(passed=len(checks(contract)) - 1, failed=1)


@pytest.mark.parametrize("kind, case", PASSING, ids=[f"{kind}-{case}" for kind, case in PASSING])
def test_a_plugin_that_keeps_the_contract_passes_every_check(run_module, kind, case):
    contract, prelude, _, good, *_ = KINDS[kind]
    result = run_module(prelude, good[case])
    result.assert_outcomes(passed=len(checks(contract)))


@pytest.mark.parametrize("kind", KINDS)
def test_every_check_has_a_plugin_broken_its_way(kind):
    contract, _, breaks, *_ = KINDS[kind]
    assert sorted(breaks) == checks(contract)


def test_a_subclass_can_opt_out_of_collection(run_module):
    result = run_module(
        LAYER_PRELUDE,
        """
        class TestPlugin(LayerContract):
            __test__ = False  # a base for other test classes
            factory = Scale

        class TestWide(TestPlugin):
            input_shape = (9,)
    """,
    )
    result.assert_outcomes(passed=len(checks(LayerContract)))
