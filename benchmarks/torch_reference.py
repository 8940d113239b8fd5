"""The recipes as a bare PyTorch CPU script would write them: nn.Sequential, torch.optim,
F.cross_entropy, float32, batches by indexing tensors. Test/benchmark only: runner never imports torch."""

from __future__ import annotations

import math
import time

from .recipes import Recipe


def build(recipe: Recipe, widths: list[int], seed: int):
    """nn.Sequential starting from the same weights as the other engines (numpy_reference.init_weights)."""
    import torch
    from torch import nn

    from .numpy_reference import init_weights

    layers: list = []
    for i, (W, b) in enumerate(init_weights(recipe, widths, seed)):
        linear = nn.Linear(*W.shape)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(W.T.copy()))
            linear.bias.copy_(torch.from_numpy(b))
        layers.append(linear)
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
            if recipe.dropout:
                layers.append(nn.Dropout(recipe.dropout))
    if recipe.output_activation == "sigmoid":
        layers.append(nn.Sigmoid())
    return nn.Sequential(*layers)


def train(recipe: Recipe, data, seed: int = 0, profile: bool = False) -> dict:
    """One run; ``profile`` (the ConvNet recipe only): its steps under torch.profiler (``torch_cnn.train``)."""
    if recipe.channels:  # the ConvNet recipe: its own script, on runner's batches
        from . import torch_cnn

        return torch_cnn.train(recipe, data, seed, profile)
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    x, y = torch.from_numpy(data.train_x), torch.from_numpy(data.train_y)
    n = len(x)
    binary = recipe.loss == "sum_squared"
    t_all = y.reshape(-1, 1).float() if binary else None
    model = build(recipe, recipe.widths(data.n_in, data.n_out), seed)
    if recipe.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=recipe.lr)
    total = recipe.total_steps(n)
    B = recipe.batch_size
    order, pos = None, n

    evaluations, eval_s, correct = recipe.evaluation_steps(n), 0.0, 0
    val_x, val_y = torch.from_numpy(data.val_x), torch.from_numpy(data.val_y)
    began = time.perf_counter()
    model.train()
    for step in range(1, total + 1):
        if recipe.sampling == "replacement":
            idx = torch.randint(0, n, (B,))
        else:
            if pos >= n:
                order, pos = torch.randperm(n), 0
            idx = order[pos : pos + B]
            pos += B
        out = model(x[idx])
        loss = 0.5 * ((out - t_all[idx]) ** 2).sum() if binary else F.cross_entropy(out, y[idx])
        with torch.no_grad():  # the running train accuracy runner reports
            correct += int((((out[:, 0] >= 0.5).long() == y[idx]) if binary else (out.argmax(1) == y[idx])).sum())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if recipe.schedule == "cosine":
            lr = recipe.lr * (1 + math.cos(math.pi * min(step - 1, total - 1) / max(total - 1, 1))) / 2
            for group in opt.param_groups:
                group["lr"] = lr
        opt.step()
        if step in evaluations:  # the val split, as often as runner evaluates it
            eval_began = time.perf_counter()
            evaluate(model, val_x, val_y, binary)
            model.train()
            eval_s += time.perf_counter() - eval_began
    eval_began = time.perf_counter()
    _, accuracy = evaluate(model, torch.from_numpy(data.test_x), torch.from_numpy(data.test_y), binary)
    eval_s += time.perf_counter() - eval_began
    train_s = time.perf_counter() - began - eval_s
    return {
        "seconds": train_s + eval_s,
        "eval_seconds": eval_s,
        "steps": total,
        "test_accuracy": accuracy,
        "mean_loss": float(loss),
    }


def evaluate(model, x, y, binary: bool) -> tuple[float, float]:
    """(mean loss, accuracy) of a split in eval mode, without gradients."""
    import torch
    import torch.nn.functional as F

    model.eval()
    with torch.no_grad():
        out = model(x)
        if binary:
            loss = 0.5 * float(((out[:, 0] - y.float()) ** 2).sum()) / len(y)
            correct = ((out[:, 0] >= 0.5).long() == y).sum()
        else:
            loss = float(F.cross_entropy(out, y))
            correct = (out.argmax(1) == y).sum()
    return loss, float(correct) / len(y)


def info() -> dict:
    """torch's version, threads and BLAS as torch reports them (None when torch is not installed)."""
    try:
        import torch
    except ImportError:
        return {}
    import re

    config = torch.__config__.show()
    found = dict(re.findall(r"\b(BLAS_INFO|LAPACK_INFO|USE_MKLDNN|USE_OPENMP)=([^,\s]+)", config))
    blas = ", ".join(f"{k}={v}" for k, v in found.items())
    return {"version": torch.__version__, "threads": torch.get_num_threads(), "blas": blas}


def available() -> bool:
    try:
        import importlib.util

        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False
