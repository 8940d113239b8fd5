"""MergeLayerContract: what every layer of several inputs (``runner.api.MergeLayer``) must do."""

from __future__ import annotations

import numbers

import numpy as np

from runner.api import input_count
from runner.contracts.base import _assert_close, _Contract, _mode
from runner.contracts.layer import _strided, _transposed
from runner.core import gradcheck


class MergeLayerContract(_Contract):
    """The checks a merge layer (a graph node of several inputs) must pass. Set ``factory`` and
    ``input_shapes`` (one sample's shape per input, no batch axis, e.g. ``((7,), (7,))``).

    - ``batch`` (4), ``seed`` (0), ``training_modes`` (``(True, False)``), ``tolerance`` (1e-7): as
      for ``LayerContract``;
    - inputs come from ``sample`` (standard normal, kept 1e-2 from 0, one array per input).
    """

    __test__ = False
    input_shapes: tuple[tuple[int, ...], ...] | None = None
    batch = 4
    training_modes: tuple[bool, ...] = (True, False)
    tolerance = 1e-7
    seed = 0

    # ---- helpers

    def shapes(self) -> tuple[tuple[int, ...], ...]:
        if not self.input_shapes:
            raise TypeError(f"{type(self).__name__}: set the class attribute input_shapes, e.g. ((7,), (7,))")
        return tuple(tuple(s) for s in self.input_shapes)

    def built(self, dtype=np.float64):
        layer = self.make()
        return layer, layer.build(self.shapes(), np.random.default_rng(self.seed), np.dtype(dtype))

    def sample(self, batch: int, dtype=np.float64, seed: int = 1) -> tuple[np.ndarray, ...]:
        rng = np.random.default_rng(seed)
        xs = []
        for shape in self.shapes():
            x = rng.standard_normal((batch, *shape))
            x += np.sign(x) * 1e-2
            xs.append(x.astype(dtype))
        return tuple(xs)

    def upstream(self, shape, dtype, seed: int = 2) -> np.ndarray:
        return np.random.default_rng(seed).standard_normal(shape).astype(dtype)

    def forward_backward(self, xs, training: bool, dout=None):
        layer, _ = self.built(xs[0].dtype)
        y = layer.forward(*xs, training=training)
        dxs = layer.backward(self.upstream(y.shape, xs[0].dtype) if dout is None else dout)
        return np.array(y), [np.array(dx) for dx in dxs], {k: np.array(g) for k, g in layer.grads.items()}

    # ---- the checks

    def test_declares_how_many_inputs(self):
        """``n_inputs`` is None (two or more) or an int >= 2 that matches ``input_shapes``."""
        n = input_count(self.make())
        assert n is None or (isinstance(n, int) and n >= 2), f"n_inputs = {n!r}; expected None or an int >= 2"
        assert n is None or n == len(self.shapes()), f"n_inputs = {n}, but input_shapes has {len(self.shapes())}"

    def test_gradients_match_numerical(self):
        """Each input's gradient (``x0``, ``x1``, ...) and every parameter's equal central differences, in float64."""
        for training in self.training_modes:
            layer, _ = self.built()
            rng = np.random.default_rng(self.seed)
            checks = gradcheck.check_node_at(layer, self.sample(self.batch), training, 1e-6, None, rng)
            expected = {f"x{k}" for k in range(len(self.shapes()))} | set(layer.params)
            assert set(checks) == expected, f"checked {sorted(checks)}, expected {sorted(expected)}"
            for key, check in checks.items():
                assert check.entries > 0 and check.rel_error <= self.tolerance, (
                    f"{_mode(training)}: {key}: backward against central differences: relative error "
                    f"{check.rel_error:.3g} > tolerance {self.tolerance:.0e}"
                )

    def test_build_returns_the_output_shape(self):
        """``build`` returns a tuple of ints, the shape of forward's output per sample."""
        for training in self.training_modes:
            layer, out = self.built()
            assert isinstance(out, tuple) and all(isinstance(n, numbers.Integral) for n in out), f"build returned {out!r}"
            y = layer.forward(*self.sample(self.batch), training=training)
            assert y.shape == (self.batch, *out), f"{_mode(training)}: forward gave {y.shape}, build said {out}"

    def test_backward_returns_one_gradient_per_input(self):
        """A tuple (or list) of arrays, one per input, each of its input's shape."""
        for training in self.training_modes:
            xs = self.sample(self.batch)
            _, dxs, _ = self.forward_backward(xs, training)
            assert len(dxs) == len(xs), f"{_mode(training)}: backward returned {len(dxs)} gradients for {len(xs)} inputs"
            for k, (x, dx) in enumerate(zip(xs, dxs)):
                assert dx.shape == x.shape, f"{_mode(training)}: d(input {k}) has shape {dx.shape}, input {x.shape}"

    def test_inputs_and_dout_are_left_unchanged(self):
        """Neither forward nor backward writes into the inputs or dout: other nodes may hold them."""
        for training in self.training_modes:
            layer, _ = self.built()
            xs = self.sample(self.batch)
            saved = [x.copy() for x in xs]
            y = layer.forward(*xs, training=training)
            dout = self.upstream(y.shape, y.dtype)
            dout_saved = dout.copy()
            layer.backward(dout)
            for k, (x, s) in enumerate(zip(xs, saved)):
                assert np.array_equal(x, s), f"{_mode(training)}: input {k} was changed"
            assert np.array_equal(dout, dout_saved), f"{_mode(training)}: backward changed dout"

    def test_dtype_is_kept(self):
        """float32 in, float32 out: the output, every d(input), params and grads."""
        for dtype in (np.dtype(np.float32), np.dtype(np.float64)):
            for training in self.training_modes:
                layer, _ = self.built(dtype)
                y = layer.forward(*self.sample(self.batch, dtype), training=training)
                arrays = {"forward's output": y}
                arrays.update({f"d(input {k})": dx for k, dx in enumerate(layer.backward(self.upstream(y.shape, dtype)))})
                arrays.update({f"params[{k!r}]": a for k, a in layer.params.items()})
                arrays.update({f"grads[{k!r}]": a for k, a in layer.grads.items()})
                for what, array in arrays.items():
                    assert np.asarray(array).dtype == dtype, f"built in {dtype}, {_mode(training)}: {what} is {array.dtype}"

    def test_non_contiguous_inputs_give_the_same_result(self):
        """Transposed and strided views of the inputs and dout give the results of contiguous arrays."""
        for training in self.training_modes:
            xs = self.sample(self.batch)
            y, dxs, grads = self.forward_backward([x.copy() for x in xs], training)
            dout = self.upstream(y.shape, xs[0].dtype)
            for name, view in (("transposed", _transposed), ("strided", _strided)):
                y2, dxs2, grads2 = self.forward_backward([view(x) for x in xs], training, view(dout))
                where = f"{_mode(training)}, {name} views"
                _assert_close(y2, y, f"{where}: forward's output")
                for k, (a, b) in enumerate(zip(dxs2, dxs)):
                    _assert_close(a, b, f"{where}: d(input {k})")
                for key in grads:
                    _assert_close(grads2[key], grads[key], f"{where}: grads[{key!r}]")

    def test_batch_of_one(self):
        """One sample gives its row of a larger batch (output and every d(input))."""
        for training in self.training_modes:
            xs = self.sample(self.batch)
            y, dxs, _ = self.forward_backward(xs, training)
            dout = self.upstream(y.shape, xs[0].dtype)
            for i in range(self.batch):
                y1, dxs1, _ = self.forward_backward([x[i : i + 1].copy() for x in xs], training, dout[i : i + 1].copy())
                _assert_close(y1[0], y[i], f"{_mode(training)}, sample {i} alone: forward's output")
                for k, (a, b) in enumerate(zip(dxs1, dxs)):
                    _assert_close(a[0], b[i], f"{_mode(training)}, sample {i} alone: d(input {k})")
