"""The recipes as a plain hand-written NumPy loop: forward, backward and update written out,
float32 throughout, batches by fancy indexing. What runner's engine is compared against. It computes
what runner reports, no more: the running accuracy of the training batches, the val split at runner's
evaluation points (``Recipe.evaluation_steps``) and the test split at the end.

``train(recipe, data, seed, tick)`` returns test accuracy and seconds; ``tick(phase)``, when given,
is called after each phase of a step (the per-phase breakdown); when None the loop has no timers.
"""

from __future__ import annotations

import math
import time

import numpy as np

from .recipes import Recipe

f32 = np.float32


def init_weights(recipe: Recipe, widths: list[int], seed: int) -> list[list[np.ndarray]]:
    """float32 [W, b] per layer, drawn from the same stream and in the same order as runner's
    build_model (seed -> SeedSequence.spawn(3)[0]), so every engine starts from the same weights."""
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(3)[0])
    init, std = recipe.linear.get("init", "normal"), recipe.linear.get("std", 0.01)
    layers = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        if init == "normal":
            W = std * rng.standard_normal((a, b))
        elif init == "he_normal":
            W = math.sqrt(2.0 / a) * rng.standard_normal((a, b))
        elif init == "uniform_centered":
            W = rng.uniform(-0.5, 0.5, (a, b))
        else:
            raise ValueError(f"init {init!r}")
        layers.append([W.astype(f32), np.zeros(b, f32)])
        if recipe.dropout and i < len(widths) - 2:
            rng.integers(2**63)  # runner's dropout layer seeds its own generator from this stream
    return layers


def batch_rng(seed: int) -> np.random.Generator:
    """The batches' stream (seed -> SeedSequence.spawn(3)[1]), as runner's: the same batches."""
    return np.random.default_rng(np.random.SeedSequence(seed).spawn(3)[1])


def predict(layers, x: np.ndarray, sigmoid_out: bool) -> np.ndarray:
    h = x
    for i, (W, b) in enumerate(layers):
        h = h @ W + b
        if i < len(layers) - 1:
            np.maximum(h, 0, out=h)
    if sigmoid_out:
        h = 1 / (1 + np.exp(-h))
    return h


def accuracy(layers, x, y, binary: bool, chunk: int = 8192) -> float:
    return evaluate(layers, x, y, binary, chunk)[1]


def evaluate(layers, x, y, binary: bool, chunk: int = 8192) -> tuple[float, float]:
    """(mean loss, accuracy) over a split, in chunks: what runner reports for val and test."""
    correct, loss = 0, 0.0
    for s in range(0, len(x), chunk):
        out, yb = predict(layers, x[s : s + chunk], binary), y[s : s + chunk]
        if binary:
            loss += 0.5 * float(np.sum((out[:, 0] - yb) ** 2))
            correct += int(np.sum((out[:, 0] >= 0.5) == yb))
        else:
            z = out - out.max(axis=1, keepdims=True)
            logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
            loss -= float(logp[np.arange(len(yb)), yb].sum())
            correct += int(np.sum(out.argmax(1) == yb))
    return loss / len(x), correct / len(x)


def train(recipe: Recipe, data, seed: int = 0, tick=None) -> dict:
    if recipe.channels:  # the ConvNet recipe: its own loop
        from . import numpy_cnn

        return numpy_cnn.train(recipe, data, seed, tick)
    x, y = data.train_x, data.train_y
    n = len(x)
    binary = recipe.loss == "sum_squared"
    widths = recipe.widths(data.n_in, data.n_out)
    layers = init_weights(recipe, widths, seed)
    rng = batch_rng(seed)
    drop_rng = np.random.default_rng(seed + 1)
    t_all = y.reshape(-1, 1).astype(f32) if binary else None
    adam = recipe.optimizer == "adam"
    if adam:
        b1, b2, eps = 0.9, 0.999, 1e-8
        m = [[np.zeros_like(p) for p in layer] for layer in layers]
        v = [[np.zeros_like(p) for p in layer] for layer in layers]
    p_drop = recipe.dropout
    keep_scale = f32(1 / (1 - p_drop)) if p_drop else None
    total = recipe.total_steps(n)
    B = recipe.batch_size
    order, pos = None, n
    last = len(layers) - 1
    loss_sum, correct = 0.0, 0
    evaluations, eval_s = recipe.evaluation_steps(n), 0.0

    began = time.perf_counter()
    if tick:
        tick(None)
    for step in range(1, total + 1):
        # batch
        if recipe.sampling == "replacement":
            idx = rng.integers(0, n, B)
        else:
            if pos >= n:
                order, pos = rng.permutation(n), 0
            idx = order[pos : pos + B]
            pos += B
        if tick:
            tick("sample indices")
        xb = x[idx]
        if tick:
            tick("gather batch")
        # forward
        hs, masks = [xb], []
        h = xb
        for i, (W, b) in enumerate(layers):
            h = h @ W + b
            if i < last:
                np.maximum(h, 0, out=h)
                if p_drop:
                    mask = (drop_rng.random(h.shape, dtype=f32) >= p_drop) * keep_scale
                    h *= mask
                    masks.append(mask)
                hs.append(h)
        if tick:
            tick("forward")
        # loss and its gradient w.r.t. the last layer's output
        nb = len(xb)
        if binary:
            out = 1 / (1 + np.exp(-h))
            diff = out - t_all[idx]
            loss = 0.5 * float(np.sum(diff * diff))
            correct += int(np.count_nonzero((out[:, 0] >= 0.5) == y[idx]))  # the running train accuracy runner reports
            dz = diff * out * (1 - out)
        else:
            z = h - h.max(axis=1, keepdims=True)
            logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
            rows = np.arange(nb)
            yb = y[idx]
            loss = -float(logp[rows, yb].mean())
            correct += int(np.count_nonzero(h.argmax(axis=1) == yb))  # the running train accuracy runner reports
            dz = np.exp(logp)
            dz[rows, yb] -= 1
            dz /= nb
        loss_sum += loss
        if tick:
            tick("loss")
        # backward
        grads = [None] * len(layers)
        for i in range(last, -1, -1):
            W = layers[i][0]
            grads[i] = (hs[i].T @ dz, dz.sum(axis=0))
            if i > 0:
                dz = dz @ W.T
                if p_drop:
                    dz *= masks[i - 1]
                dz *= hs[i] > 0
        if tick:
            tick("backward")
        # update
        if recipe.schedule == "cosine":
            lr = recipe.lr * (1 + math.cos(math.pi * min(step - 1, total - 1) / max(total - 1, 1))) / 2
        else:
            lr = recipe.lr
        if adam:
            c1, c2 = 1 - b1**step, math.sqrt(1 - b2**step)
            for layer, g_layer, m_layer, v_layer in zip(layers, grads, m, v):
                for p, g, mp, vp in zip(layer, g_layer, m_layer, v_layer):
                    mp *= b1
                    mp += (1 - b1) * g
                    vp *= b2
                    vp += (1 - b2) * g * g
                    p -= (lr / c1) * (mp / (np.sqrt(vp) / c2 + eps))
        else:
            for layer, g_layer in zip(layers, grads):
                for p, g in zip(layer, g_layer):
                    p -= lr * g
        if tick:
            tick("optimizer")
        if step in evaluations:  # the val split, as often as runner evaluates it
            eval_began = time.perf_counter()
            evaluate(layers, data.val_x, data.val_y, binary)
            eval_s += time.perf_counter() - eval_began
            if tick:
                tick("evaluation")
    eval_began = time.perf_counter()
    test_acc = accuracy(layers, data.test_x, data.test_y, binary)
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
