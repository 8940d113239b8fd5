"""The three recipes of the engine comparison, as data: the same network, loss, optimizer, batches
and length for every engine (runner, hand-written NumPy, PyTorch).

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
        return [n_in, *self.hidden, n_out]

    def quick(self) -> Recipe:
        """A few steps on a slice of the data: exercises every code path in seconds."""
        return replace(self, iterations=min(self.iterations or 10**9, 30), limit=2000, inner=min(self.inner, 2))

    def describe(self) -> str:
        net = "-".join(str(w) for w in self.hidden)
        length = f"{self.iterations} iterations" if self.iterations is not None else f"{self.epochs} epochs"
        extra = f", dropout {self.dropout:g}" if self.dropout else ""
        sched = f", {self.schedule} schedule" if self.schedule != "constant" else ""
        return (
            f"{self.dataset}, hidden {net}, {self.activation}{extra}, {self.loss}, {self.optimizer} lr {self.lr:g}{sched}, "
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

RECIPES: dict[str, Recipe] = {r.name: r for r in (MNIST, MLP512, TINY)}


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


def gemm_shapes(widths: list[int], batch: int) -> list[tuple[str, int, int, int, bool, bool]]:
    """The (name, m, n, k, transpose A, transpose B) products of one step: C (m x n) = op(A) (m x k) op(B) (k x n)."""
    shapes = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        shapes.append((f"L{i + 1} forward x W ({batch}x{a} @ {a}x{b})", batch, b, a, False, False))
        shapes.append((f"L{i + 1} dW = x^T dout ({a}x{batch} @ {batch}x{b})", a, b, batch, True, False))
        if i > 0:
            shapes.append((f"L{i + 1} dx = dout W^T ({batch}x{b} @ {b}x{a})", batch, a, b, False, True))
    return shapes
