"""Convolution on images (batch, channels, height, width), by im2col: every patch a kernel sees becomes a
row of one matrix, and the convolution becomes one matrix product (the deep-learning-from-scratch
book's chapter 7, CS231n's second assignment).

    cols = im2col(x)                       (batch * out_h * out_w, channels * kh * kw)
    y    = cols @ W_mat^T + b              W_mat = W.reshape(out_channels, channels * kh * kw)
    dW   = dy_mat^T @ cols                 dy_mat = dy as (batch * out_h * out_w, out_channels)
    db   = sum over rows of dy_mat
    dx   = col2im(dy_mat @ W_mat)          each patch's gradient added back where the patch came from

out_h = (height + 2 padding - kh) // stride + 1, and the same for the width. Python loops run over
the kernel's kh * kw offsets only, never over pixels or samples.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from runner.api import Layer, RunnerError, option


def pair(name: str, value, minimum: int) -> tuple[int, int]:
    """An option given as one whole number (both axes) or a list of two: (height, width)."""
    values = list(value) if isinstance(value, (list, tuple)) else [value, value]
    expected = f"a whole number >= {minimum} or a list of two, [height, width]"
    if len(values) != 2:
        raise RunnerError(f"{name}: expected {expected}, got {value!r}")
    h, w = (option(name, v, int, lambda v: v >= minimum, expected) for v in values)
    return h, w


def image_shape(layer: str, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(channels, height, width) of image inputs; any other shape is a RunnerError that says so."""
    if len(input_shape) != 3:
        shape = "x".join(map(str, input_shape))
        raise RunnerError(
            f"{layer}: expected images of (channels, height, width), got {shape}; "
            "the dataset gives images to a model whose first layer takes them (docs/plugins.md, 'Images')"
        )
    c, h, w = input_shape
    return c, h, w


def output_size(layer: str, size: int, kernel: int, stride: int, padding: int) -> int:
    """How many positions a kernel takes along an axis of ``size`` (padded on both sides)."""
    if size + 2 * padding < kernel:
        raise RunnerError(f"{layer}: the kernel ({kernel}) is larger than the padded input ({size} + 2 x {padding})")
    return (size + 2 * padding - kernel) // stride + 1


def pad(x: np.ndarray, padding: tuple[int, int], value: float = 0.0) -> np.ndarray:
    ph, pw = padding
    if ph == pw == 0:
        return x
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=value)


def windows(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int]) -> np.ndarray:
    """A view (batch, channels, out_h, out_w, kh, kw) of every patch of an already padded x; no copy."""
    view = sliding_window_view(x, kernel, axis=(2, 3))
    return view[:, :, :: stride[0], :: stride[1]]


def im2col(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]) -> np.ndarray:
    """(batch, channels, h, w) -> (batch * out_h * out_w, channels * kh * kw): row (n, i, j) is the patch
    under output pixel (i, j) of sample n, its entries in W's order (channel, kernel row, kernel column)."""
    patches = windows(pad(x, padding), kernel, stride)  # (n, c, oh, ow, kh, kw)
    n, c, oh, ow, kh, kw = patches.shape
    return patches.transpose(0, 2, 3, 1, 4, 5).reshape(n * oh * ow, c * kh * kw)


def col2im(
    cols: np.ndarray, x_shape: tuple[int, ...], kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]
) -> np.ndarray:
    """im2col's adjoint: every row of ``cols`` added back onto the patch of x it came from (patches overlap
    when stride < kernel, so the sums matter). Returns an array of ``x_shape``."""
    n, c, h, w = x_shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    patches = cols.reshape(n, oh, ow, c, kh, kw)
    padded = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=cols.dtype)
    for i in range(kh):  # kernel row i touches padded rows i, i + sh, ..., i + sh (oh - 1)
        for j in range(kw):
            padded[:, :, i : i + sh * oh : sh, j : j + sw * ow : sw] += patches[:, :, :, :, i, j].transpose(0, 3, 1, 2)
    return padded[:, :, ph : ph + h, pw : pw + w]


#: name -> f(rng, shape, fan_in, fan_out, std); fan_in = channels kh kw, fan_out = out_channels kh kw (torch's)
CONV_INITS = {
    "normal": lambda rng, shape, fan_in, fan_out, std: std * rng.standard_normal(shape),
    "he_normal": lambda rng, shape, fan_in, fan_out, std: math.sqrt(2.0 / fan_in) * rng.standard_normal(shape),
    "he_uniform": lambda rng, shape, fan_in, fan_out, std: rng.uniform(-math.sqrt(6.0 / fan_in), math.sqrt(6.0 / fan_in), shape),
    "xavier_normal": lambda rng, shape, fan_in, fan_out, std: math.sqrt(2.0 / (fan_in + fan_out)) * rng.standard_normal(shape),
    "xavier_uniform": lambda rng, shape, fan_in, fan_out, std: rng.uniform(
        -math.sqrt(6.0 / (fan_in + fan_out)), math.sqrt(6.0 / (fan_in + fan_out)), shape
    ),
    # torch.nn.Conv2d's default (kaiming_uniform_ with a = sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    "torch": lambda rng, shape, fan_in, fan_out, std: rng.uniform(-1.0 / math.sqrt(fan_in), 1.0 / math.sqrt(fan_in), shape),
}


class Conv2D(Layer):
    """2-D convolution (torch's Conv2d; cross-correlation, as every framework computes it).

    y[n, o, i, j] = b[o] + sum_(c, p, q) W[o, c, p, q] x_pad[n, c, stride i + p, stride j + q], by im2col
    (module docstring): y = cols W_mat^T + b; dW = dy_mat^T cols; db = sum dy_mat; dx = col2im(dy_mat W_mat).
    Shapes: (batch, channels, h, w) -> (batch, out, out_h, out_w); W: (out, channels, kh, kw); b: (out,).
    ``init`` draws W by the fan-in channels kh kw (he_normal: std sqrt(2 / fan_in)); ``bias: false``
    leaves b out (before a batchnorm2d, which has its own shift). Keeps the im2col matrix for backward:
    ``workspace_bytes`` per sample, reported when the model is built.
    """

    image_input = True

    def __init__(
        self,
        out: int,
        kernel=3,
        stride=1,
        padding=0,
        bias: bool = True,
        init: str = "he_normal",
        std: float = 0.01,
    ):
        super().__init__()
        self.out = option("out", out, int, lambda v: v > 0, "a positive integer number of channels")
        self.kernel = pair("kernel", kernel, 1)
        self.stride = pair("stride", stride, 1)
        self.padding = pair("padding", padding, 0)
        self.bias = option("bias", bias, bool)
        self.init = option("init", init, choices=CONV_INITS)
        self.std = option("std", std, float, lambda v: v > 0, "a positive number")

    def build(self, input_shape, rng, dtype):
        c, h, w = image_shape("conv2d", input_shape)
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        oh, ow = output_size("conv2d", h, kh, sh, ph), output_size("conv2d", w, kw, sw, pw)
        fan_in, fan_out = c * kh * kw, self.out * kh * kw
        W = CONV_INITS[self.init](rng, (self.out, c, kh, kw), fan_in, fan_out, self.std)
        self.params = {"W": W.astype(dtype)}
        if self.bias:
            self.params["b"] = np.zeros(self.out, dtype=dtype)
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.workspace_bytes = oh * ow * fan_in * np.dtype(dtype).itemsize  # the im2col rows of one sample
        self.matmul_flops = 2 * oh * ow * fan_in * self.out  # one sample's forward product
        return (self.out, oh, ow)

    def forward(self, x, training):
        self.x_shape = x.shape
        self.cols = im2col(x, self.kernel, self.stride, self.padding)
        W_mat = self.params["W"].reshape(self.out, -1)
        y = self.cols @ W_mat.T  # (n oh ow, out)
        if self.bias:
            y += self.params["b"]
        oh, ow = self.output_hw(x.shape)
        return np.ascontiguousarray(y.reshape(len(x), oh, ow, self.out).transpose(0, 3, 1, 2))  # NCHW in memory too

    def backward(self, dout):
        dy = dout.transpose(0, 2, 3, 1).reshape(-1, self.out)  # (n oh ow, out)
        W_mat = self.params["W"].reshape(self.out, -1)
        self.grads["W"][...] = (dy.T @ self.cols).reshape(self.params["W"].shape)
        if self.bias:
            self.grads["b"][...] = dy.sum(axis=0)
        if not self.needs_input_grad:
            return None
        return col2im(dy @ W_mat, self.x_shape, self.kernel, self.stride, self.padding)

    def output_hw(self, x_shape: tuple[int, ...]) -> tuple[int, int]:
        """(out_h, out_w) for inputs of ``x_shape`` (batch, channels, h, w)."""
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        return (x_shape[2] + 2 * ph - kh) // sh + 1, (x_shape[3] + 2 * pw - kw) // sw + 1
