"""Pooling over image windows (batch, channels, height, width), each channel on its own.

Windows come from the same view as convolution's im2col (conv.windows: no copy until reshaped), and
backward adds each window's gradient back where the window came from (a loop over the kernel's
offsets only, as col2im).
"""

from __future__ import annotations

import numpy as np

from runner.api import Layer, RunnerError

from .conv import image_shape, output_size, pad, pair, windows


def scatter_windows(
    grads: np.ndarray, x_shape: tuple[int, ...], kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]
) -> np.ndarray:
    """(batch, channels, out_h, out_w, kh, kw) gradients of every window entry -> d(x) of ``x_shape``:
    overlapping windows add up; the padding's share is dropped."""
    n, c, h, w = x_shape
    _, _, oh, ow, kh, kw = grads.shape
    (sh, sw), (ph, pw) = stride, padding
    padded = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=grads.dtype)
    for i in range(kh):
        for j in range(kw):
            padded[:, :, i : i + sh * oh : sh, j : j + sw * ow : sw] += grads[:, :, :, :, i, j]
    return padded[:, :, ph : ph + h, pw : pw + w]


class Pool2D(Layer):
    """What max and average pooling share: kernel, stride (default: the kernel), padding, output size."""

    image_input = True
    name = "pool"

    def __init__(self, kernel=2, stride=None, padding=0):
        super().__init__()
        self.kernel = pair("kernel", kernel, 1)
        self.stride = self.kernel if stride is None else pair("stride", stride, 1)
        self.padding = pair("padding", padding, 0)
        if any(2 * p > k for p, k in zip(self.padding, self.kernel)):
            raise RunnerError(f"padding: expected at most half the kernel {list(self.kernel)}, got {list(self.padding)}")

    def build(self, input_shape, rng, dtype):
        c, h, w = image_shape(self.name, input_shape)
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        return (c, output_size(self.name, h, kh, sh, ph), output_size(self.name, w, kw, sw, pw))


class MaxPool2D(Pool2D):
    """y = the largest entry of each window (torch's MaxPool2d; the padding counts as -inf).

    Backward: dx gets dout at the window's first largest entry (row-major, as torch), 0 elsewhere.
    A tie is a kink (moving one entry changes which one wins): ``branches`` counts the windows each
    entry wins, so the gradient check skips exactly the entries whose perturbation changes a winner.
    """

    name = "maxpool2d"

    def forward(self, x, training):
        self.x_shape = x.shape
        patches = windows(pad(x, self.padding, -np.inf), self.kernel, self.stride)  # (n, c, oh, ow, kh, kw)
        flat = patches.reshape(*patches.shape[:4], -1)  # (n, c, oh, ow, kh kw)
        self.winner = flat.argmax(axis=-1)[..., None]  # the first largest entry of each window
        return np.take_along_axis(flat, self.winner, axis=-1)[..., 0]

    def backward(self, dout):
        n, c, oh, ow = dout.shape
        grads = np.zeros((n, c, oh, ow, self.kernel[0] * self.kernel[1]), dtype=dout.dtype)
        np.put_along_axis(grads, self.winner, dout[..., None], axis=-1)
        grads = grads.reshape(n, c, oh, ow, *self.kernel)
        return scatter_windows(grads, self.x_shape, self.kernel, self.stride, self.padding)

    def branches(self, x):
        """How many windows each entry of x wins: a perturbation that changes any window's winner changes it."""
        patches = windows(pad(x, self.padding, -np.inf), self.kernel, self.stride)
        flat = patches.reshape(*patches.shape[:4], -1)
        wins = np.zeros(flat.shape, dtype=np.float64)
        np.put_along_axis(wins, flat.argmax(axis=-1)[..., None], 1.0, axis=-1)
        wins = wins.reshape(patches.shape)
        return scatter_windows(wins, x.shape, self.kernel, self.stride, self.padding).astype(np.int64)


class AvgPool2D(Pool2D):
    """y = the mean of each window, kh kw entries, the padding's zeros included (torch's AvgPool2d).

    Backward: every entry of a window gets dout / (kh kw).
    """

    name = "avgpool2d"

    def forward(self, x, training):
        self.x_shape = x.shape
        return windows(pad(x, self.padding), self.kernel, self.stride).mean(axis=(4, 5))

    def backward(self, dout):
        kh, kw = self.kernel
        share = (dout / (kh * kw))[..., None, None]  # (n, c, oh, ow, 1, 1)
        grads = np.broadcast_to(share, (*dout.shape, kh, kw))
        return scatter_windows(grads, self.x_shape, self.kernel, self.stride, self.padding)


class GlobalAvgPool(Layer):
    """y[n, c] = the mean of channel c over the whole image; dx = dout / (h w) at every pixel.
    Shapes: (batch, channels, h, w) -> (batch, channels)."""

    image_input = True

    def build(self, input_shape, rng, dtype):
        c, _, _ = image_shape("global_avg_pool", input_shape)
        return (c,)

    def forward(self, x, training):
        self.x_shape = x.shape
        return x.mean(axis=(2, 3))

    def backward(self, dout):
        n, c, h, w = self.x_shape
        return np.broadcast_to((dout / (h * w))[:, :, None, None], self.x_shape).copy()
