"""The recipes of the engine comparison, as data: the same network, loss, optimizer, batches
and length for every engine (runner, hand-written NumPy, PyTorch). Three MLPs, and a small ConvNet
(``cnn``: conv blocks before the dense layers, see ``Recipe.channels``).

Each mirrors one of the project's experiments (conf/experiment/*.yaml); ``quick()`` shortens it to
a few steps on a slice of the data, only to prove the harness still works.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class Recipe:
    name: str
    title: str
    experiment: str  # the +experiment it mirrors
    dataset: str  # dataset plugin name
    hidden: tuple[int, ...]
    linear: dict = field(default_factory=dict)  # options of every linear layer (init, std)
    activation: str = "relu"
    output_activation: str | None = None
    dropout: float = 0.0
    loss: str = "softmax_cross_entropy"
    optimizer: str = "sgd"
    lr: float = 0.1
    schedule: str = "constant"  # constant or cosine (min_lr 0, no warm-up)
    batch_size: int = 100
    sampling: str = "shuffle"  # shuffle (a permutation per epoch) or replacement
    iterations: int | None = None
    epochs: int = 10
    limit: int | None = None  # use only the first `limit` samples of each split (quick mode)
    inner: int = 1  # runs per worker process (short recipes: time several, take the median)
    min_repeats: int = 3  # interleaved repeats at least (cheap recipes get more)
    # A ConvNet (model.type: cnn) when ``channels`` is set: per entry conv2d (kernel, padding, stride 1) -> activation
    # -> pool 2x2, then flatten and the dense layers of ``hidden``; the samples are images of ``image_shape``.
    channels: tuple[int, ...] = ()
    kernel: int = 3
    padding: int = 1
    pool: str | None = None  # maxpool2d (2x2, stride 2) after each block, or None
    conv: dict = field(default_factory=dict)  # options of every conv2d layer (init)
    image_shape: tuple[int, int, int] | None = None  # (channels, height, width) of a sample

    def conv_layers(self, batch: int | None = None) -> list[dict]:
        """The conv layers' geometry: per layer its input (c, h, w), ``out`` channels, output (oh, ow), ``fan_in``
        (c kh kw), the rows of its im2col matrix at ``batch`` (default the recipe's) and whether its d(input) is
        needed (all but the first: nobody needs d(loss)/d(pixels))."""
        if not self.channels:
            return []
        batch = batch or self.batch_size
        assert self.image_shape is not None, f"{self.name}: a ConvNet recipe needs image_shape"
        c, h, w = self.image_shape
        k, p = self.kernel, self.padding
        layers = []
        for i, out in enumerate(self.channels):
            oh, ow = h + 2 * p - k + 1, w + 2 * p - k + 1
            layers.append(
                {
                    "c": c,
                    "h": h,
                    "w": w,
                    "out": out,
                    "oh": oh,
                    "ow": ow,
                    "fan_in": c * k * k,
                    "rows": batch * oh * ow,
                    "dx": i > 0,
                }
            )
            c, h, w = out, (oh // 2 if self.pool else oh), (ow // 2 if self.pool else ow)
        return layers

    def flat_features(self, n_in: int) -> int:
        """The width the dense layers start from: the flattened last conv block, or the samples' own."""
        if not self.channels:
            return n_in
        last = self.conv_layers()[-1]
        oh, ow = (last["oh"] // 2, last["ow"] // 2) if self.pool else (last["oh"], last["ow"])
        return last["out"] * oh * ow

    def steps_per_epoch(self, n_train: int) -> int:
        return math.ceil(n_train / self.batch_size)

    def total_steps(self, n_train: int) -> int:
        return self.iterations if self.iterations is not None else self.epochs * self.steps_per_epoch(n_train)

    def evaluation_steps(self, n_train: int) -> set[int]:
        """The steps after which every engine evaluates the val split: the ends of every k-th epoch,
        k giving about 20 evaluations per run (runner's default ``trainer.eval_every: null``), and the last
        step. The test split is evaluated once, after the last step."""
        per_epoch, total = self.steps_per_epoch(n_train), self.total_steps(n_train)
        epochs = math.ceil(total / per_epoch)
        every = max(1, math.ceil(epochs / 20))
        return {min(e * per_epoch, total) for e in range(every, epochs + 1, every)} | {total}

    def widths(self, n_in: int, n_out: int) -> list[int]:
        """The dense layers' widths (a ConvNet's start from its flattened last block)."""
        return [self.flat_features(n_in), *self.hidden, n_out]

    def quick(self) -> Recipe:
        """A few steps on a slice of the data: exercises every code path in seconds (a ConvNet's: fewer, on less)."""
        steps, limit = (20, 1000) if self.channels else (30, 2000)
        return replace(self, iterations=min(self.iterations or 10**9, steps), limit=limit, inner=min(self.inner, 2))

    def describe(self) -> str:
        net = "-".join(str(w) for w in self.hidden)
        if self.channels:
            pool = f" -> {self.pool} 2x2" if self.pool else ""
            init = self.conv.get("init", "he_normal")
            net = (
                f"conv {self.kernel}x{self.kernel} pad {self.padding} {'-'.join(map(str, self.channels))} ch "
                f"({self.activation}{pool}, {init}), flatten, dense {net}"
            )
        epochs = f"{self.epochs} epoch{'s' * (self.epochs != 1)}"
        length = f"{self.iterations} iterations" if self.iterations is not None else epochs
        extra = f", dropout {self.dropout:g}" if self.dropout else ""
        sched = f", {self.schedule} schedule" if self.schedule != "constant" else ""
        return (
            f"{self.dataset}, {'' if self.channels else 'hidden '}{net}, "
            f"{self.activation}{extra}, {self.loss}, {self.optimizer} lr {self.lr:g}{sched}, "
            f"batch {self.batch_size} ({self.sampling}), {length}, float32"
        )


#: The classic seed recipe (conf/experiment/mnist.yaml).
MNIST = Recipe(
    name="mnist",
    title="seed MNIST 784-50-10 SGD",
    experiment="mnist",
    dataset="mnist",
    hidden=(50,),
    linear={"init": "normal", "std": 0.01},
    loss="softmax_cross_entropy",
    optimizer="sgd",
    lr=0.1,
    batch_size=100,
    sampling="replacement",
    iterations=10000,
    min_repeats=5,
)

#: conf/experiment/mnist_mlp.yaml (dropout 0.2, Adam, cosine schedule, batch 128) for 10 epochs, as the issue measured.
MLP512 = Recipe(
    name="mlp512",
    title="MNIST 784-512-512-10 Adam",
    experiment="mnist_mlp",
    dataset="mnist",
    hidden=(512, 512),
    linear={"init": "he_normal"},
    dropout=0.2,
    loss="softmax_cross_entropy",
    optimizer="adam",
    lr=0.001,
    schedule="cosine",
    batch_size=128,
    sampling="shuffle",
    epochs=10,
)

#: The iris-sized net (conf/experiment/iris_binary.yaml): 4-20-1, sigmoid output, 1/2 sum of squares.
TINY = Recipe(
    name="tiny",
    title="iris 4-20-1 SGD",
    experiment="iris_binary",
    dataset="iris_binary",
    hidden=(20,),
    linear={"init": "uniform_centered"},
    output_activation="sigmoid",
    loss="sum_squared",
    optimizer="sgd",
    lr=0.1,
    batch_size=15,
    sampling="shuffle",
    iterations=1000,
    inner=15,
    min_repeats=5,
)

#: conf/experiment/mnist_cnn.yaml (conv 3x3 32 -> relu -> maxpool 2 -> conv 3x3 64 -> relu -> maxpool 2 -> 128 -> 10,
#: He-normal, Adam lr 0.002, cosine, batch 100) shortened from 6 epochs to 1 (550 steps; the cosine schedule over that
#: epoch), without its dropout 0.25 on the dense layer (the NumPy and PyTorch loops would need runner's masks).
CNN = Recipe(
    name="cnn",
    title="MNIST CNN conv 32-64, 128, Adam",
    experiment="mnist_cnn",
    dataset="mnist",
    hidden=(128,),
    linear={"init": "he_normal"},
    channels=(32, 64),
    kernel=3,
    padding=1,
    pool="maxpool2d",
    conv={"init": "he_normal"},
    image_shape=(1, 28, 28),
    loss="softmax_cross_entropy",
    optimizer="adam",
    lr=0.002,
    schedule="cosine",
    batch_size=100,
    sampling="shuffle",
    epochs=1,
)

RECIPES: dict[str, Recipe] = {r.name: r for r in (MNIST, MLP512, TINY, CNN)}
#: The MLP recipes: ``--quick``'s default (the CNN recipe comes with the conv section, see ``python -m benchmarks -h``).
MLP_RECIPES = ("mnist", "mlp512", "tiny")


def get(name: str, quick: bool = False) -> Recipe:
    recipe = RECIPES[name]
    return recipe.quick() if quick else recipe


def gemm_flops_per_step(widths: list[int], batch: int) -> dict[str, float]:
    """FLOPs of the matrix products of one training step (2 m n k each).

    ``needed``: forward x W, backward dW = x^T dout and dx = dout W^T for every layer but the first
    (nobody needs d(loss)/d(input)); ``computed_extra``: the first layer's dx, when an engine computes it.
    """
    forward = sum(2 * batch * a * b for a, b in zip(widths[:-1], widths[1:]))
    d_weights = forward
    d_inputs = sum(2 * batch * a * b for a, b in list(zip(widths[:-1], widths[1:]))[1:])
    first_dx = 2 * batch * widths[0] * widths[1]
    return {"forward": forward, "needed": forward + d_weights + d_inputs, "computed_extra": first_dx}


def gemm_shapes(widths: list[int], batch: int, first_dx: bool = False) -> list[tuple[str, int, int, int, bool, bool]]:
    """The (name, m, n, k, transpose A, transpose B) products of one step: C (m x n) = op(A) (m x k) op(B) (k x n).
    ``first_dx``: the first layer's d(input) is needed too (dense layers after conv layers)."""
    shapes = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        shapes.append((f"L{i + 1} forward x W ({batch}x{a} @ {a}x{b})", batch, b, a, False, False))
        shapes.append((f"L{i + 1} dW = x^T dout ({a}x{batch} @ {batch}x{b})", a, b, batch, True, False))
        if i > 0 or first_dx:
            shapes.append((f"L{i + 1} dx = dout W^T ({batch}x{b} @ {b}x{a})", batch, a, b, False, True))
    return shapes


def conv_shapes(layer: dict, name: str) -> list[tuple[str, int, int, int, bool, bool]]:
    """The im2col products of one conv layer (``Recipe.conv_layers``), as conv2d computes them: forward
    cols W_mat^T, dW = dy^T cols, and (when needed) d(cols) = dy W_mat; M = batch oh ow rows, K = c kh kw."""
    m, k, out = layer["rows"], layer["fan_in"], layer["out"]
    shapes = [
        (f"{name} forward cols W^T ({m}x{k} @ {k}x{out})", m, out, k, False, True),
        (f"{name} dW = dy^T cols ({out}x{m} @ {m}x{k})", out, k, m, True, False),
    ]
    if layer["dx"]:
        shapes.append((f"{name} dcols = dy W ({m}x{out} @ {out}x{k})", m, k, out, False, False))
    return shapes


def step_products(recipe: Recipe, n_in: int, n_out: int) -> list[tuple[str, int, int, int, bool, bool]]:
    """Every matrix product of one training step of ``recipe``: its conv layers' (C1, C2, ...) and its dense layers'."""
    shapes = [s for i, layer in enumerate(recipe.conv_layers()) for s in conv_shapes(layer, f"C{i + 1}")]
    return shapes + gemm_shapes(recipe.widths(n_in, n_out), recipe.batch_size, first_dx=bool(recipe.channels))
