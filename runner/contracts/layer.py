"""LayerContract: what every layer plugin must do."""

from __future__ import annotations

import copy
import numbers

import numpy as np

from runner.api import Layer, RunnerError
from runner.contracts.base import _assert_close, _Contract, _is_number, _mode
from runner.core import gradcheck


def _transposed(a: np.ndarray) -> np.ndarray:
    """The same values, as a transposed view (laid out in reverse axis order: not C-contiguous)."""
    return np.ascontiguousarray(a.transpose()).transpose()


def _strided(a: np.ndarray) -> np.ndarray:
    """The same values, as every other element along the last axis of a larger array."""
    wide = np.zeros((*a.shape[:-1], 2 * a.shape[-1]), a.dtype)
    wide[..., ::2] = a
    return wide[..., ::2]


class _OnCopies(Layer):
    """A layer declared in place, handed copies of x and dout: for the gradient check, which reuses its x.

    Its params, grads, buffers, kinks and rng are the layer's own (not Layer.__init__'s).
    """

    def __init__(self, layer: Layer):
        self.layer = layer

    params = property(lambda self: self.layer.params)
    grads = property(lambda self: self.layer.grads)
    buffers = property(lambda self: self.layer.buffers)
    kinks = property(lambda self: self.layer.kinks)
    rng = property(lambda self: getattr(self.layer, "rng", None))

    def build(self, input_shape, rng, dtype):
        return self.layer.build(input_shape, rng, dtype)

    def forward(self, x, training):
        return self.layer.forward(x.copy(), training)

    def backward(self, dout):
        return self.layer.backward(dout.copy())

    def branches(self, x):
        return self.layer.branches(x)


class LayerContract(_Contract):
    """The checks a Layer plugin must pass. Set ``factory`` and ``input_shape``; the rest have defaults.

    - ``factory(**options)`` makes the layer; ``options``: a dict, ``{}`` by default;
    - ``input_shape``: the shape of one sample, no batch axis, e.g. ``(7,)``;
    - ``batch`` (4): samples per batch; ``seed`` (0): for ``build`` and the gradient check;
    - ``training_modes`` (``(True, False)``): the modes every check runs in;
    - ``tolerance`` (1e-7): the largest relative error of backward against central differences;
    - ``in_place`` (False): True declares that forward may write into x, or backward into dout;
      the checks then hand it copies, and do not require x and dout unchanged;
    - ``per_sample`` (True): each sample's output depends on that sample alone (False for batchnorm).

    Inputs come from ``sample`` (standard normal, kept 1e-2 away from 0); override it for a layer
    with another domain. The gradient checks use ``runner.gradcheck.check_layer``'s own inputs.
    """

    __test__ = False
    input_shape: tuple[int, ...] | None = None
    batch = 4
    training_modes: tuple[bool, ...] = (True, False)
    tolerance = 1e-7
    in_place = False
    per_sample = True
    seed = 0

    # ---- helpers

    def shape(self) -> tuple[int, ...]:
        """``input_shape``, which a subclass must set."""
        if self.input_shape is None:
            raise TypeError(f"{type(self).__name__}: set the class attribute input_shape (one sample, no batch axis), e.g. (7,)")
        return tuple(self.input_shape)

    def built(self, dtype=np.float64) -> tuple[Layer, tuple]:
        """A new layer built for ``input_shape`` in ``dtype``: (layer, the output shape ``build`` returned)."""
        layer = self.make()
        return layer, layer.build(self.shape(), np.random.default_rng(self.seed), np.dtype(dtype))

    def sample(self, batch: int, dtype=np.float64, seed: int = 1) -> np.ndarray:
        """Inputs of shape (batch, *input_shape): standard normal, at least 1e-2 from 0 (ReLU-like kinks)."""
        x = np.random.default_rng(seed).standard_normal((batch, *self.shape()))
        x += np.sign(x) * 1e-2
        return x.astype(dtype)

    def upstream(self, shape: tuple, dtype, seed: int = 2) -> np.ndarray:
        """A random d(loss)/d(output): not ones, under which a wrong sum over an axis could hide."""
        return np.random.default_rng(seed).standard_normal(shape).astype(dtype)

    def forward_backward(self, x: np.ndarray, training: bool, dout: np.ndarray | None = None):
        """A new layer built for x's dtype, one forward and one backward: copies of (y, dx, grads)."""
        layer, _ = self.built(x.dtype)
        y = layer.forward(x, training=training)
        dx = layer.backward(self.upstream(y.shape, x.dtype) if dout is None else dout)
        return np.array(y), np.array(dx), {key: np.array(g) for key, g in layer.grads.items()}

    def gradient_checks(self, training: bool) -> tuple[Layer, dict]:
        """``runner.gradcheck.check_layer`` on a new layer: (the layer, {"x": Check, param key: Check})."""
        layer = self.make()
        checked = _OnCopies(layer) if self.in_place else layer
        return layer, gradcheck.check_layer(checked, self.shape(), batch=self.batch, seed=self.seed, training=training)

    def _assert_gradient(self, check, what: str) -> None:
        assert check.entries > 0 and check.rel_error <= self.tolerance, (
            f"{what}: backward against central differences: relative error {check.rel_error:.3g} > tolerance "
            f"{self.tolerance:.0e} (max abs diff {check.max_abs_diff:.3g} over {check.entries} entries, "
            f"{check.kinks} at kinks skipped)"
        )

    # ---- the checks

    def test_input_gradient_matches_numerical(self):
        """backward's d(input) equals central differences of forward, in float64, in every mode."""
        for training in self.training_modes:
            _, checks = self.gradient_checks(training)
            self._assert_gradient(checks["x"], f"{_mode(training)}: d(input)")

    def test_parameter_gradients_match_numerical(self):
        """Every parameter's gradient (``grads[key]`` after backward) equals central differences, in every mode."""
        for training in self.training_modes:
            layer, checks = self.gradient_checks(training)
            for key in layer.params:
                assert key in checks, f"{_mode(training)}: the gradient check has no result for params[{key!r}]"
                self._assert_gradient(checks[key], f"{_mode(training)}: params[{key!r}]")

    def test_build_returns_the_output_shape(self):
        """``build`` returns, as a tuple of ints, the shape forward's output has per sample: runner
        infers and checks a model's shapes from these before training."""
        for training in self.training_modes:
            layer, out = self.built()
            assert isinstance(out, tuple) and all(isinstance(n, numbers.Integral) for n in out), (
                f"build returned {out!r}; expected the output shape of one sample, a tuple of ints"
            )
            y = layer.forward(self.sample(self.batch), training=training)
            assert y.shape == (self.batch, *out), (
                f"{_mode(training)}: forward gave shape {y.shape}; build returned {out}, so expected {(self.batch, *out)}"
            )

    def test_forward_leaves_its_input_unchanged(self):
        """Neither forward nor backward writes into x (the previous layer may keep it for its own
        backward), unless the layer is declared ``in_place``."""
        if self.in_place:
            return
        for training in self.training_modes:
            layer, _ = self.built()
            x = self.sample(self.batch)
            saved = x.copy()
            y = layer.forward(x, training=training)
            assert np.array_equal(x, saved), f"{_mode(training)}: forward changed its input x"
            layer.backward(self.upstream(y.shape, y.dtype))
            assert np.array_equal(x, saved), f"{_mode(training)}: backward changed the input x forward was given"

    def test_backward_leaves_dout_unchanged(self):
        """backward does not write into dout (the next layer may hold it), unless the layer is declared ``in_place``."""
        if self.in_place:
            return
        for training in self.training_modes:
            layer, _ = self.built()
            y = layer.forward(self.sample(self.batch), training=training)
            dout = self.upstream(y.shape, y.dtype)
            saved = dout.copy()
            layer.backward(dout)
            assert np.array_equal(dout, saved), f"{_mode(training)}: backward changed dout"

    def test_dtype_is_kept(self):
        """Built in float32 (float64), params, grads and buffers are float32 (float64), and so are
        forward's output and backward's d(input): float32 training stays float32 throughout."""
        for dtype in (np.dtype(np.float32), np.dtype(np.float64)):
            for training in self.training_modes:
                layer, _ = self.built(dtype)
                y = layer.forward(self.sample(self.batch, dtype), training=training)
                dx = layer.backward(self.upstream(y.shape, dtype))
                arrays = {"forward's output": y, "backward's d(input)": dx}
                for kind in ("params", "grads", "buffers"):
                    arrays.update({f"{kind}[{key!r}]": a for key, a in getattr(layer, kind, {}).items()})
                for what, array in arrays.items():
                    assert array.dtype == dtype, f"built in {dtype}, {_mode(training)}: {what} is {array.dtype}"

    def test_non_contiguous_input_gives_the_same_result(self):
        """A transposed view and a strided view of x (and of dout) give the output, d(input) and
        gradients of a contiguous x: slices, transposes and reshapes reach layers as views."""
        for training in self.training_modes:
            x = self.sample(self.batch)
            y, dx, grads = self.forward_backward(x.copy(), training)
            dout = self.upstream(y.shape, x.dtype)
            for name, view in (("transposed", _transposed), ("strided", _strided)):
                y2, dx2, grads2 = self.forward_backward(view(x), training, view(dout))
                where = f"{_mode(training)}, a {name} view of x"
                _assert_close(y2, y, f"{where}: forward's output")
                _assert_close(dx2, dx, f"{where}: backward's d(input)")
                for key in grads:
                    _assert_close(grads2[key], grads[key], f"{where}: grads[{key!r}]")

    def test_batch_of_one(self):
        """A batch of one sample works in every mode; with ``per_sample``, its output and d(input) equal
        that sample's row of a larger batch (in training only for a layer without randomness in
        ``self.rng``). A layer that is not per-sample may refuse one sample in training with a RunnerError."""
        layer, _ = self.built()
        random = isinstance(getattr(layer, "rng", None), np.random.Generator)
        for training in self.training_modes:
            x = self.sample(self.batch)
            y, dx, _ = self.forward_backward(x.copy(), training)
            dout = self.upstream(y.shape, x.dtype)
            compare = self.per_sample and not (training and random)
            for k in range(self.batch) if compare else (0,):
                try:
                    y1, dx1, _ = self.forward_backward(x[k : k + 1].copy(), training, dout[k : k + 1].copy())
                except RunnerError:
                    if self.per_sample or not training:
                        raise
                    continue  # e.g. batchnorm: batch statistics need two samples
                where = f"{_mode(training)}, sample {k} alone"
                assert y1.shape == (1, *y.shape[1:]), f"{where}: forward gave shape {y1.shape}, expected {(1, *y.shape[1:])}"
                assert dx1.shape == (1, *x.shape[1:]), f"{where}: backward gave shape {dx1.shape}, expected {(1, *x.shape[1:])}"
                if compare:
                    _assert_close(y1[0], y[k], f"{where}: forward's output against row {k} of a batch of {self.batch}")
                    _assert_close(dx1[0], dx[k], f"{where}: d(input) against row {k} of a batch of {self.batch}")

    def test_training_and_eval_modes_run(self):
        """One layer, called as a run calls it: training steps and evaluations in turn, on batches of
        two sizes; every output and d(input) is finite, keeps the batch axis and x's shape."""
        layer, _ = self.built()
        features, calls = None, []
        for batch in (self.batch, self.batch + 3):
            for training in self.training_modes:
                calls.append(f"{_mode(training)} on {batch} samples")
                where = f"call {len(calls)} of one layer ({', then '.join(calls)})"
                x = self.sample(batch, seed=batch)
                try:
                    y = layer.forward(x, training=training)
                    dx = layer.backward(self.upstream(y.shape, y.dtype))
                except Exception as e:
                    raise AssertionError(f"{where}: {type(e).__name__}: {e}") from e
                features = y.shape[1:] if features is None else features
                assert y.shape == (batch, *features), f"{where}: forward gave shape {y.shape}, expected {(batch, *features)}"
                assert np.all(np.isfinite(y)), f"{where}: forward gave {np.sum(~np.isfinite(y))} non-finite values"
                assert dx.shape == x.shape, f"{where}: backward gave shape {dx.shape}, expected x's {x.shape}"
                assert np.all(np.isfinite(dx)), f"{where}: backward gave {np.sum(~np.isfinite(dx))} non-finite values"

    def test_grads_match_params_and_are_filled_in_place(self):
        """``grads`` has the keys, shapes and dtypes of ``params``, and backward overwrites every
        entry of the very arrays ``grads`` held after build: the runner keeps references to them."""
        layer, _ = self.built()
        assert set(layer.grads) == set(layer.params), f"grads has keys {sorted(layer.grads)}, params {sorted(layer.params)}"
        for key, p in layer.params.items():
            g = layer.grads[key]
            assert (g.shape, g.dtype) == (p.shape, p.dtype), (
                f"grads[{key!r}] is {g.shape} {g.dtype}, params[{key!r}] {p.shape} {p.dtype}"
            )
        held = dict(layer.grads)
        for training in self.training_modes:
            for g in held.values():
                g[...] = np.nan  # every entry must be overwritten (not added to)
            y = layer.forward(self.sample(self.batch), training=training)
            layer.backward(self.upstream(y.shape, y.dtype))
            for key, g in held.items():
                assert layer.grads[key] is g, (
                    f"{_mode(training)}: backward replaced grads[{key!r}] by a new array; write into it "
                    f"(self.grads[{key!r}][...] = ...): the runner holds the array build made"
                )
                assert np.all(np.isfinite(g)), (
                    f"{_mode(training)}: backward left {np.sum(~np.isfinite(g))} entries of grads[{key!r}] as they were "
                    f"(or added to them); it must overwrite every entry"
                )

    def test_params_are_read_at_every_call(self):
        """The layer reads ``self.params``, ``self.grads`` and ``self.buffers`` at every call, never a
        copy kept from build: a run's gradient check deep-copies the model and replaces them with
        float64 arrays. Such a copy, its parameters then changed, computes what a float64 layer does."""
        for training in self.training_modes:
            twin = copy.deepcopy(self.built(np.float32)[0])
            for kind in ("params", "grads", "buffers"):
                setattr(twin, kind, {key: a.astype(np.float64) for key, a in getattr(twin, kind, {}).items()})
            reference, _ = self.built(np.float64)
            for key, p in twin.params.items():
                p[...] = 1.5 * p + 0.25
                reference.params[key][...] = p
            for key, b in twin.buffers.items():
                reference.buffers[key][...] = b
            x = self.sample(self.batch)
            y, y_ref = twin.forward(x.copy(), training=training), reference.forward(x.copy(), training=training)
            where = f"{_mode(training)}, the float64 copy with changed parameters"
            assert y.dtype == np.float64, f"{where}: forward gave {y.dtype}"
            _assert_close(y, y_ref, f"{where}: forward's output")
            dout = self.upstream(y.shape, np.float64)
            _assert_close(twin.backward(dout.copy()), reference.backward(dout.copy()), f"{where}: backward's d(input)")
            for key in reference.grads:
                _assert_close(twin.grads[key], reference.grads[key], f"{where}: grads[{key!r}]")

    def test_kinks_and_branches_are_declared(self):
        """``kinks`` is a tuple of numbers (the inputs where a piecewise formula changes; empty when
        smooth) and ``branches(x)`` is None or an integer (or boolean) array of x's shape (None only without kinks):
        the gradient check reads them to skip entries whose perturbation crosses a kink."""
        layer, _ = self.built()
        kinks = layer.kinks
        assert isinstance(kinks, tuple) and all(_is_number(k) for k in kinks), (
            f"kinks = {kinks!r}; expected a tuple of floats, e.g. (0.0,) for a ReLU, () for a smooth layer"
        )
        x = self.sample(self.batch)
        pieces = layer.branches(x)
        if pieces is None:
            assert not kinks, f"kinks = {kinks!r} but branches(x) returned None"
            return
        integer = isinstance(pieces, np.ndarray) and (np.issubdtype(pieces.dtype, np.integer) or pieces.dtype == bool)
        assert integer and pieces.shape == x.shape, (
            f"branches(x) returned {type(pieces).__name__} {getattr(pieces, 'dtype', '')} {getattr(pieces, 'shape', '')}; "
            f"expected None or an integer (or boolean) array of x's shape {x.shape}"
        )
