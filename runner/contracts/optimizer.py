"""OptimizerContract: what every optimizer plugin must do."""

from __future__ import annotations

import copy

import numpy as np

from runner.contracts.base import _Contract
from runner.run import checkpoint


def _first_impurity(value, path: str) -> str | None:
    """Where ``value`` holds something a checkpoint cannot store; None when it is plain data."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return None
    if isinstance(value, np.generic):
        return None if value.dtype.kind in "biuf" else f"{path}: a NumPy {value.dtype} scalar"
    if isinstance(value, np.ndarray):
        return None if value.dtype.kind != "O" else f"{path}: an array of Python objects"
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path}: the key {key!r} ({type(key).__name__}; keys must be strings)"
            found = _first_impurity(item, f"{path}[{key!r}]")
            if found:
                return found
        return None
    if isinstance(value, (list, tuple)):
        return next(filter(None, (_first_impurity(item, f"{path}[{i}]") for i, item in enumerate(value))), None)
    return f"{path}: a {type(value).__module__}.{type(value).__qualname__}"


def _first_difference(a, b, path: str) -> str | None:
    """Where two state trees differ; None when equal."""
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return f"{path}: keys {sorted(map(str, a))} against {sorted(map(str, b))}"
        return next(filter(None, (_first_difference(a[k], b[k], f"{path}[{k!r}]") for k in a)), None)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b):
        return next(filter(None, (_first_difference(x, y, f"{path}[{i}]") for i, (x, y) in enumerate(zip(a, b)))), None)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return None if np.array_equal(a, b) else path
    return None if a == b else f"{path}: {a!r} against {b!r}"


def _arrays(value, path: str = "state"):
    """(path, array) of every array in a state tree."""
    if isinstance(value, np.ndarray):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _arrays(item, f"{path}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _arrays(item, f"{path}[{i}]")


class OptimizerContract(_Contract):
    """The checks an Optimizer plugin must pass. Set ``factory`` (and ``options``: lr...).

    - ``param_shapes``: the parameters stepped, by stable name (``{"0.linear.W": (5, 3), ...}``);
    - ``steps`` (5): steps per stretch of a check; ``seed`` (0);
    - ``modifies_grads`` (False): True when ``step`` documents that it writes into the gradients.
    """

    __test__ = False
    param_shapes: dict[str, tuple[int, ...]] = {"0.linear.W": (5, 3), "0.linear.b": (3,), "2.prelu.alpha": (1,)}
    steps = 5
    seed = 0
    modifies_grads = False

    def sample_params(self, dtype=np.float64, seed: int | None = None) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(self.seed if seed is None else seed)
        return {name: rng.standard_normal(shape).astype(dtype) for name, shape in self.param_shapes.items()}

    def gradients(self, n: int, dtype=np.float64, seed: int = 1) -> list[dict[str, np.ndarray]]:
        """Random gradients for ``n`` steps."""
        rng = np.random.default_rng(seed)
        return [{name: rng.standard_normal(shape).astype(dtype) for name, shape in self.param_shapes.items()} for _ in range(n)]

    def run(self, optimizer, params: dict, grads: list[dict]) -> None:
        """One step per entry of ``grads``, each on copies of the gradients."""
        for g in grads:
            optimizer.step(params, {name: a.copy() for name, a in g.items()})

    def test_step_updates_the_params_in_place(self):
        """step changes every parameter, in the very arrays it was given: the model holds them."""
        params = self.sample_params()
        held, before = dict(params), {name: p.copy() for name, p in params.items()}
        self.run(self.make(), params, self.gradients(self.steps))
        for name, p in held.items():
            assert params[name] is p, f"step replaced params[{name!r}] by a new array; update it in place (theta -= ...)"
            assert not np.array_equal(p, before[name]), f"{self.steps} steps left params[{name!r}] unchanged"

    def test_steps_lower_a_quadratic(self):
        """On f(theta) = 1/2 sum (theta - c)^2, whose gradient is theta - c, ``steps`` steps make f smaller."""
        params, c = self.sample_params(seed=2), self.sample_params(seed=3)

        def f() -> float:
            return sum(0.5 * float(np.sum((params[name] - c[name]) ** 2)) for name in params)

        start, optimizer = f(), self.make()
        for _ in range(self.steps):
            optimizer.step(params, {name: params[name] - c[name] for name in params})
        assert f() < start, f"{self.steps} steps on 1/2 |theta - c|^2 took it from {start:.6g} to {f():.6g}"

    def test_state_dict_round_trip_continues_bitwise(self):
        """A fresh optimizer given a (deep copy of the) state_dict continues exactly as the original:
        after 0 and ``steps`` steps, ``steps`` more on both give bitwise identical parameters."""
        for k in (0, self.steps):
            grads = self.gradients(k + self.steps, seed=4)
            first, params = self.make(), self.sample_params()
            self.run(first, params, grads[:k])
            state = copy.deepcopy(first.state_dict())
            resumed, second = {name: p.copy() for name, p in params.items()}, self.make()
            second.load_state_dict(state)
            self.run(first, params, grads[k:])
            self.run(second, resumed, grads[k:])
            for name in params:
                assert np.array_equal(resumed[name], params[name]), (
                    f"saved after {k} steps, resumed for {self.steps} more: params[{name!r}] differs from the uninterrupted "
                    f"run by up to {np.max(np.abs(resumed[name] - params[name])):.3g}: state_dict misses some state"
                )

    def test_state_dict_is_a_snapshot(self):
        """state_dict returns copies: steps taken after it leave it as it was (a checkpoint written later holds that moment)."""
        optimizer, params = self.make(), self.sample_params()
        grads = self.gradients(2 * self.steps, seed=5)
        self.run(optimizer, params, grads[: self.steps])
        state = optimizer.state_dict()
        saved = copy.deepcopy(state)
        self.run(optimizer, params, grads[self.steps :])
        where = _first_difference(state, saved, "state")
        assert where is None, f"later steps changed the state_dict returned earlier, at {where}: return copies of the arrays"

    def test_state_dict_is_plain_data(self, tmp_path):
        """state_dict holds only numbers, strings, None, lists, dicts with string keys and NumPy arrays,
        and survives a runner checkpoint (.npz and JSON: tuples come back as lists, NumPy scalars as
        Python numbers): a fresh optimizer loaded from it continues exactly as one loaded from the original."""
        optimizer, params = self.make(), self.sample_params()
        grads = self.gradients(2 * self.steps, seed=6)
        self.run(optimizer, params, grads[: self.steps])
        state = optimizer.state_dict()
        where = _first_impurity(state, "state")
        assert where is None, f"state_dict is not plain data: {where}"
        stored = checkpoint.load(checkpoint.save(tmp_path, {"optimizer": state}))["optimizer"]
        original, reloaded = self.make(), self.make()
        original.load_state_dict(copy.deepcopy(state))
        reloaded.load_state_dict(stored)
        p_original, p_reloaded = params, {name: p.copy() for name, p in params.items()}
        self.run(original, p_original, grads[self.steps :])
        self.run(reloaded, p_reloaded, grads[self.steps :])
        for name in params:
            assert np.array_equal(p_reloaded[name], p_original[name]), (
                f"loaded from a checkpoint, params[{name!r}] went another way than loaded from the state itself"
            )

    def test_dtype_is_kept(self):
        """float32 (float64) parameters stay float32 (float64), and so do the state's floating-point arrays."""
        for dtype in (np.dtype(np.float32), np.dtype(np.float64)):
            optimizer, params = self.make(), self.sample_params(dtype)
            self.run(optimizer, params, self.gradients(self.steps, dtype))
            for name, p in params.items():
                assert p.dtype == dtype, f"{dtype} params: params[{name!r}] became {p.dtype}"
            for where, array in _arrays(optimizer.state_dict()):
                if np.issubdtype(array.dtype, np.floating):
                    assert array.dtype == dtype, f"{dtype} params: {where} is {array.dtype}; keep state in the params' dtype"

    def test_grads_are_not_modified(self):
        """step leaves the gradients as they were (gradient clipping and logging read them), unless ``modifies_grads``."""
        if self.modifies_grads:
            return
        optimizer, params = self.make(), self.sample_params()
        grads = self.gradients(self.steps)
        saved = copy.deepcopy(grads)
        for i, g in enumerate(grads):
            optimizer.step(params, g)
            for name in g:
                assert np.array_equal(g[name], saved[i][name]), f"step {i + 1} changed grads[{name!r}]"

    def test_lr_is_read_at_every_step(self):
        """An optimizer with an ``lr`` attribute reads it at every step: learning-rate schedules set
        it between steps. Halving it before the second step changes the result."""
        first, second = self.make(), self.make()
        if not hasattr(first, "lr"):
            return
        grads = self.gradients(2, seed=7)
        p_first, p_second = self.sample_params(), self.sample_params()
        self.run(first, p_first, grads[:1])
        self.run(second, p_second, grads[:1])
        second.lr = first.lr * 0.5
        self.run(first, p_first, grads[1:])
        self.run(second, p_second, grads[1:])
        assert any(not np.array_equal(p_first[name], p_second[name]) for name in p_first), (
            "setting lr to half before a step changed nothing: step must read self.lr every time"
        )
