"""Fast variants of convolution and max pooling: the numbers of conv.Conv2D and pool.MaxPool2D bit for
bit (tests/test_fast_variants.py), with memory walked in a cheaper order. Read the references for the math.

Both loop over the kernel's offsets (i, j) and move one strided slice of the (padded) image per offset,
instead of gathering a 6-axis window view in one go: NumPy copies a 4-axis slice much faster than a
6-axis transpose (docs/benchmarks.md, "Convolutional networks"). The sums happen in the same order as in the
references, so the results are the same floats.
"""

from __future__ import annotations

import numpy as np

from .conv import Conv2D, pad
from .pool import MaxPool2D


def offsets(kernel: tuple[int, int], stride: tuple[int, int], out_hw: tuple[int, int]):
    """(index, i, j, (rows, cols)) per kernel offset, row-major: the slices of the padded image that
    offset (i, j) reads for every output pixel."""
    (kh, kw), (sh, sw), (oh, ow) = kernel, stride, out_hw
    for i in range(kh):
        for j in range(kw):
            yield i * kw + j, i, j, (slice(i, i + sh * oh, sh), slice(j, j + sw * ow, sw))


class FastConv2D(Conv2D):
    """Conv2D with im2col and col2im one kernel offset at a time, on a channels-last view of the image."""

    def forward(self, x, training):
        n, c = x.shape[:2]
        (kh, kw), (oh, ow) = self.kernel, self.output_hw(x.shape)
        image = pad(x, self.padding).transpose(0, 2, 3, 1)  # (n, h, w, c), a view
        cols = np.empty((n, oh, ow, c, kh, kw), dtype=x.dtype)
        for _, i, j, (rows, columns) in offsets(self.kernel, self.stride, (oh, ow)):
            cols[:, :, :, :, i, j] = image[:, rows, columns, :]
        self.x_shape = x.shape
        self.cols = cols.reshape(n * oh * ow, c * kh * kw)
        y = self.cols @ self.params["W"].reshape(self.out, -1).T
        if self.bias:
            y += self.params["b"]
        return np.ascontiguousarray(y.reshape(n, oh, ow, self.out).transpose(0, 3, 1, 2))

    def backward(self, dout):
        dy = dout.transpose(0, 2, 3, 1).reshape(-1, self.out)
        W_mat = self.params["W"].reshape(self.out, -1)
        np.matmul(dy.T, self.cols, out=self.grads["W"].reshape(self.out, -1))
        if self.bias:
            dy.sum(axis=0, out=self.grads["b"])
        if not self.needs_input_grad:
            return None
        n, c, h, w = self.x_shape
        (kh, kw), (ph, pw), (oh, ow) = self.kernel, self.padding, dout.shape[2:]
        patches = (dy @ W_mat).reshape(n, oh, ow, c, kh, kw)
        image = np.zeros((n, h + 2 * ph, w + 2 * pw, c), dtype=dout.dtype)  # channels last: c is contiguous
        for _, i, j, (rows, columns) in offsets(self.kernel, self.stride, (oh, ow)):
            image[:, rows, columns, :] += patches[:, :, :, :, i, j]
        return image[:, ph : ph + h, pw : pw + w, :].transpose(0, 3, 1, 2)


class FastMaxPool2D(MaxPool2D):
    """MaxPool2D as a running maximum over the kernel's offsets, and one mask per offset marking the
    window's first largest entry (the reference's argmax) instead of the winner's index."""

    def forward(self, x, training):
        n, c, h, w = self.x_shape = x.shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        out_hw = ((h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1)
        image = pad(x, self.padding, -np.inf)
        views = [image[:, :, rows, columns] for _, _, _, (rows, columns) in offsets(self.kernel, self.stride, out_hw)]
        y = views[0].copy()
        for view in views[1:]:
            np.maximum(y, view, out=y)
        self.masks = np.empty((len(views), *y.shape), dtype=bool)
        free = np.ones(y.shape, dtype=bool)  # windows whose first largest entry is not found yet
        for mask, view in zip(self.masks, views):
            np.equal(view, y, out=mask)
            mask &= free
            free ^= mask
        return y

    def backward(self, dout):
        n, c, h, w = self.x_shape
        (ph, pw), out_hw = self.padding, dout.shape[2:]
        image = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=dout.dtype)
        for index, _, _, (rows, columns) in offsets(self.kernel, self.stride, out_hw):
            image[:, :, rows, columns] += dout * self.masks[index]
        return image[:, :, ph : ph + h, pw : pw + w]
