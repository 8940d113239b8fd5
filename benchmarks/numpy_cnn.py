"""The ConvNet recipe (``recipes.CNN``) as a plain hand-written NumPy loop: what a competent NumPy user
writes from the textbook (CS231n's second assignment), float32 throughout, images NCHW.

- conv: im2col by a strided view of the zero-padded batch, copied into (batch oh ow, c kh kw) rows; one
  matrix product with the (out, c kh kw) weights; d(cols) added back per kernel offset (col2im);
- ReLU in place; 2x2 max pooling by reshaping each image into 2x2 blocks (CS231n's "reshape" pooling),
  its backward a mask of the blocks' maxima (a tie would share the gradient: after a ReLU only zeros tie,
  and the ReLU's backward zeroes those);
- dense layers, softmax cross-entropy and Adam as ``numpy_reference`` writes them.

It computes what runner reports, no more: the running accuracy of the training batches, the val split at
runner's evaluation points and the test split at the end, in runner's chunks (``EVAL_ROWS`` rows).
``tick(phase)``, when given, is called after each layer's forward and backward under runner's per-layer
names (``forward: 3 conv2d``), so the two engines' breakdowns line up row by row.
"""

from __future__ import annotations

import math
import time

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .numpy_reference import batch_rng
from .recipes import Recipe

f32 = np.float32
EVAL_ROWS = 102  # runner.core.evaluation.eval_rows(the recipe's model): the same chunks at evaluation (tested)


def layer_names(recipe: Recipe) -> list[str]:
    """runner's layer types in order (``runner.core.model.cnn_layers``): conv2d, relu, maxpool2d per block, flatten,
    then linear (relu) per dense layer."""
    block = ["conv2d", recipe.activation] + ([recipe.pool] if recipe.pool else [])
    dense = [recipe.activation, "linear"] * len(recipe.hidden)
    return block * len(recipe.channels) + ["flatten", "linear", *dense]


def init_weights(recipe: Recipe, n_out: int, seed: int) -> tuple[list[list[np.ndarray]], list[list[np.ndarray]]]:
    """([W (out, c, k, k), b] per conv layer, [W (in, out), b] per dense layer), float32, drawn from the same stream,
    in the same order and by the same formulas as runner's build_model (conv2d he_normal over fan_in = c k k, then
    linear he_normal over its input width): every engine starts from the same weights."""
    if recipe.activation != "relu" or recipe.pool not in ("maxpool2d", None) or recipe.dropout:
        raise ValueError(f"{recipe.name}: the NumPy ConvNet loop is written for relu, maxpool2d and no dropout")
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(3)[0])
    conv_init, dense_init = recipe.conv.get("init", "he_normal"), recipe.linear.get("init", "normal")
    if conv_init != "he_normal" or dense_init not in ("he_normal", "normal"):
        raise ValueError(f"{recipe.name}: inits conv {conv_init!r} / linear {dense_init!r} not written here")
    convs = []
    for layer in recipe.conv_layers():
        shape = (layer["out"], layer["c"], recipe.kernel, recipe.kernel)
        W = math.sqrt(2.0 / layer["fan_in"]) * rng.standard_normal(shape)
        convs.append([W.astype(f32), np.zeros(layer["out"], f32)])
    dense = []
    widths = recipe.widths(0, n_out)
    for a, b in zip(widths[:-1], widths[1:]):
        if dense_init == "he_normal":
            W = math.sqrt(2.0 / a) * rng.standard_normal((a, b))
        else:
            W = recipe.linear.get("std", 0.01) * rng.standard_normal((a, b))
        dense.append([W.astype(f32), np.zeros(b, f32)])
    return convs, dense


def im2col(x: np.ndarray, k: int, pad: int) -> np.ndarray:
    """(n, c, h, w) -> (n oh ow, c k k), stride 1: row (n, i, j) is the patch under output pixel (i, j)."""
    n, c, h, w = x.shape
    xp = np.zeros((n, c, h + 2 * pad, w + 2 * pad), x.dtype)
    xp[:, :, pad : pad + h, pad : pad + w] = x
    oh, ow = h + 2 * pad - k + 1, w + 2 * pad - k + 1
    s0, s1, s2, s3 = xp.strides
    patches = as_strided(xp, (n, oh, ow, c, k, k), (s0, s2, s3, s1, s2, s3))
    return patches.reshape(n * oh * ow, c * k * k)  # the copy


def col2im(dcols: np.ndarray, x_shape: tuple[int, ...], k: int, pad: int) -> np.ndarray:
    """im2col's adjoint: each patch's gradient added back where the patch came from."""
    n, c, h, w = x_shape
    oh, ow = h + 2 * pad - k + 1, w + 2 * pad - k + 1
    patches = dcols.reshape(n, oh, ow, c, k, k)
    dxp = np.zeros((n, c, h + 2 * pad, w + 2 * pad), dcols.dtype)
    for i in range(k):
        for j in range(k):
            dxp[:, :, i : i + oh, j : j + ow] += patches[:, :, :, :, i, j].transpose(0, 3, 1, 2)
    return dxp[:, :, pad : pad + h, pad : pad + w]


def conv_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray, pad: int) -> tuple[np.ndarray, np.ndarray]:
    """(y as an NCHW view of the (n oh ow, out) product, cols)."""
    n, _, h, w = x.shape
    out, _, k, _ = W.shape
    cols = im2col(x, k, pad)
    y = cols @ W.reshape(out, -1).T
    y += b
    oh, ow = h + 2 * pad - k + 1, w + 2 * pad - k + 1
    return y.reshape(n, oh, ow, out).transpose(0, 3, 1, 2), cols


def pool_forward(a: np.ndarray) -> np.ndarray:
    """2x2 max pooling, stride 2 (even sizes: the recipe's 28 and 14)."""
    n, c, h, w = a.shape
    return a.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


def pool_backward(dp: np.ndarray, a: np.ndarray, p: np.ndarray) -> np.ndarray:
    n, c, h, w = a.shape
    blocks = a.reshape(n, c, h // 2, 2, w // 2, 2)
    mask = blocks == p[:, :, :, None, :, None]
    return (mask * dp[:, :, :, None, :, None]).reshape(n, c, h, w)


def predict(convs, dense, x: np.ndarray, pad: int) -> np.ndarray:
    h = x
    for W, b in convs:
        a, _ = conv_forward(h, W, b, pad)
        np.maximum(a, 0, out=a)
        h = pool_forward(a)
    h = h.reshape(len(h), -1)
    for i, (W, b) in enumerate(dense):
        h = h @ W + b
        if i < len(dense) - 1:
            np.maximum(h, 0, out=h)
    return h


def evaluate(convs, dense, x, y, pad: int, chunk: int = EVAL_ROWS) -> tuple[float, float]:
    """(mean loss, accuracy) over a split, in chunks."""
    correct, loss = 0, 0.0
    for s in range(0, len(x), chunk):
        out, yb = predict(convs, dense, x[s : s + chunk], pad), y[s : s + chunk]
        z = out - out.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        loss -= float(logp[np.arange(len(yb)), yb].sum())
        correct += int(np.sum(out.argmax(1) == yb))
    return loss / len(x), correct / len(x)


def train(recipe: Recipe, data, seed: int = 0, tick=None) -> dict:
    shape = data.image_shape
    assert shape == recipe.image_shape, (shape, recipe.image_shape)
    x, y = data.train_x.reshape(-1, *shape), data.train_y
    val_x, test_x = data.val_x.reshape(-1, *shape), data.test_x.reshape(-1, *shape)
    n = len(x)
    convs, dense = init_weights(recipe, data.n_out, seed)
    params = [p for layer in convs + dense for p in layer]
    b1, b2, eps = 0.9, 0.999, 1e-8
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    pad, k = recipe.padding, recipe.kernel
    names = layer_names(recipe)
    per_block = 3 if recipe.pool else 2
    flat_at = per_block * len(convs)  # the flatten layer's index
    rng = batch_rng(seed)
    total = recipe.total_steps(n)
    B = recipe.batch_size
    order, pos = None, n
    last = len(dense) - 1
    loss_sum, correct = 0.0, 0
    evaluations, eval_s = recipe.evaluation_steps(n), 0.0

    def mark(phase: str, i: int) -> None:
        if tick:
            tick(f"{phase}: {i} {names[i]}")

    began = time.perf_counter()
    if tick:
        tick(None)
    for step in range(1, total + 1):
        if pos >= n:
            order, pos = rng.permutation(n), 0
        idx = order[pos : pos + B]
        pos += B
        if tick:
            tick("sample indices")
        xb = x[idx]
        if tick:
            tick("gather batch")
        # forward: conv blocks, flatten, dense layers
        h, saved = xb, []
        for c, (W, b) in enumerate(convs):
            i = per_block * c
            a, cols = conv_forward(h, W, b, pad)
            mark("forward", i)
            np.maximum(a, 0, out=a)
            mark("forward", i + 1)
            p = pool_forward(a) if recipe.pool else a
            if recipe.pool:
                mark("forward", i + 2)
            saved.append((h.shape, cols, a, p))
            h = p
        pooled_shape = h.shape
        h = h.reshape(len(h), -1)
        mark("forward", flat_at)
        hs = [h]
        for j, (W, b) in enumerate(dense):
            h = h @ W + b
            mark("forward", flat_at + 1 + 2 * j)
            if j < last:
                np.maximum(h, 0, out=h)
                mark("forward", flat_at + 2 + 2 * j)
                hs.append(h)
        # loss and its gradient w.r.t. the logits
        nb = len(xb)
        z = h - h.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        rows = np.arange(nb)
        yb = y[idx]
        loss_sum += -float(logp[rows, yb].mean())
        correct += int(np.count_nonzero(h.argmax(axis=1) == yb))  # the running train accuracy runner reports
        dz = np.exp(logp)
        dz[rows, yb] -= 1
        dz /= nb
        if tick:
            tick("loss")
        # backward: dense layers, flatten, conv blocks
        grads_dense = [None] * len(dense)
        for j in range(last, -1, -1):
            W = dense[j][0]
            if j < last:
                dz *= hs[j + 1] > 0
                mark("backward", flat_at + 2 + 2 * j)
            grads_dense[j] = (hs[j].T @ dz, dz.sum(axis=0))
            dz = dz @ W.T
            mark("backward", flat_at + 1 + 2 * j)
        d = dz.reshape(pooled_shape)
        mark("backward", flat_at)
        grads_conv = [None] * len(convs)
        for c in range(len(convs) - 1, -1, -1):
            i = per_block * c
            x_shape, cols, a, p = saved[c]
            W = convs[c][0]
            if recipe.pool:
                d = pool_backward(d, a, p)
                mark("backward", i + 2)
            d *= a > 0
            mark("backward", i + 1)
            out = W.shape[0]
            dy = d.transpose(0, 2, 3, 1).reshape(-1, out)
            grads_conv[c] = ((dy.T @ cols).reshape(W.shape), dy.sum(axis=0))
            if c > 0:  # nobody needs d(loss)/d(pixels)
                d = col2im(dy @ W.reshape(out, -1), x_shape, k, pad)
            mark("backward", i)
        # update: Adam, the cosine schedule
        if recipe.schedule == "cosine":
            lr = recipe.lr * (1 + math.cos(math.pi * min(step - 1, total - 1) / max(total - 1, 1))) / 2
        else:
            lr = recipe.lr
        c1, c2 = 1 - b1**step, math.sqrt(1 - b2**step)
        grads = [g for pair in grads_conv + grads_dense for g in pair]
        for p, g, mp, vp in zip(params, grads, m, v):
            mp *= b1
            mp += (1 - b1) * g
            vp *= b2
            vp += (1 - b2) * g * g
            p -= (lr / c1) * (mp / (np.sqrt(vp) / c2 + eps))
        if tick:
            tick("optimizer")
        if step in evaluations:  # the val split, as often as runner evaluates it
            eval_began = time.perf_counter()
            evaluate(convs, dense, val_x, data.val_y, pad)
            eval_s += time.perf_counter() - eval_began
            if tick:
                tick("evaluation")
    eval_began = time.perf_counter()
    _, test_acc = evaluate(convs, dense, test_x, data.test_y, pad)
    eval_s += time.perf_counter() - eval_began
    train_s = time.perf_counter() - began - eval_s
    if tick:
        tick("evaluation")
    return {
        "seconds": train_s + eval_s,
        "eval_seconds": eval_s,
        "steps": total,
        "test_accuracy": test_acc,
        "mean_loss": loss_sum / total,
    }
