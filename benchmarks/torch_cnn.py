"""The ConvNet recipe (``recipes.CNN``) as a bare PyTorch CPU script writes it: nn.Conv2d, nn.MaxPool2d,
nn.Linear in an nn.Sequential, F.cross_entropy, torch.optim.Adam, float32. It starts from the other
engines' weights (``numpy_cnn.init_weights``) and trains on their batches (runner's batch stream, the
indices drawn with NumPy), so after the same steps the three engines' accuracies agree to rounding.
Test/benchmark only: runner never imports torch."""

from __future__ import annotations

import math
import time

from .numpy_cnn import EVAL_ROWS, init_weights
from .numpy_reference import batch_rng
from .recipes import Recipe


def build(recipe: Recipe, n_out: int, seed: int):
    """nn.Sequential of the recipe's layers, holding the weights every engine starts from."""
    import torch
    from torch import nn

    convs, dense = init_weights(recipe, n_out, seed)
    layers: list = []
    for (W, b), geometry in zip(convs, recipe.conv_layers()):
        conv = nn.Conv2d(geometry["c"], geometry["out"], recipe.kernel, padding=recipe.padding)
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(W))
            conv.bias.copy_(torch.from_numpy(b))
        layers += [conv, nn.ReLU()] + ([nn.MaxPool2d(2)] if recipe.pool else [])
    layers.append(nn.Flatten())
    for i, (W, b) in enumerate(dense):
        linear = nn.Linear(*W.shape)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(W.T.copy()))
            linear.bias.copy_(torch.from_numpy(b))
        layers.append(linear)
        if i < len(dense) - 1:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def evaluate(model, x, y) -> tuple[float, float]:
    """(mean loss, accuracy) of a split in eval mode, without gradients, in runner's chunks."""
    import torch
    import torch.nn.functional as F

    model.eval()
    loss, correct = 0.0, 0
    with torch.no_grad():
        for s in range(0, len(x), EVAL_ROWS):
            out, yb = model(x[s : s + EVAL_ROWS]), y[s : s + EVAL_ROWS]
            loss += float(F.cross_entropy(out, yb, reduction="sum"))
            correct += int((out.argmax(1) == yb).sum())
    return loss / len(y), correct / len(y)


def train(recipe: Recipe, data, seed: int = 0, profile: bool = False) -> dict:
    """One run; ``profile``: the training steps (no evaluation) under torch.profiler, its top operators added
    as ``profile`` rows (self CPU time per step)."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    shape = data.image_shape
    x = torch.from_numpy(data.train_x).view(-1, *shape)
    y = torch.from_numpy(data.train_y)
    n = len(x)
    model = build(recipe, data.n_out, seed)
    opt = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    rng = batch_rng(seed)
    total = recipe.total_steps(n)
    B = recipe.batch_size
    order, pos = None, n
    evaluations, eval_s, correct = (set() if profile else recipe.evaluation_steps(n)), 0.0, 0
    val_x, val_y = torch.from_numpy(data.val_x).view(-1, *shape), torch.from_numpy(data.val_y)
    profiler = None
    if profile:
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as torch_profile

        profiler = torch_profile(activities=[ProfilerActivity.CPU])
        profiler.__enter__()
    began = time.perf_counter()
    model.train()
    for step in range(1, total + 1):
        if pos >= n:
            order, pos = torch.from_numpy(rng.permutation(n)), 0
        idx = order[pos : pos + B]
        pos += B
        out = model(x[idx])
        yb = y[idx]
        loss = F.cross_entropy(out, yb)
        with torch.no_grad():  # the running train accuracy runner reports
            correct += int((out.argmax(1) == yb).sum())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if recipe.schedule == "cosine":
            lr = recipe.lr * (1 + math.cos(math.pi * min(step - 1, total - 1) / max(total - 1, 1))) / 2
            for group in opt.param_groups:
                group["lr"] = lr
        opt.step()
        if step in evaluations:  # the val split, as often as runner evaluates it
            eval_began = time.perf_counter()
            evaluate(model, val_x, val_y)
            model.train()
            eval_s += time.perf_counter() - eval_began
    last = float(loss.detach())
    if profiler is not None:
        profiler.__exit__(None, None, None)
    eval_began = time.perf_counter()
    _, accuracy = evaluate(model, torch.from_numpy(data.test_x).view(-1, *shape), torch.from_numpy(data.test_y))
    eval_s += time.perf_counter() - eval_began
    train_s = time.perf_counter() - began - eval_s
    result = {
        "seconds": train_s + eval_s,
        "eval_seconds": eval_s,
        "steps": total,
        "test_accuracy": accuracy,
        "last_loss": last,
    }
    if profiler is not None:
        result["profile"] = profile_rows(profiler, total)
    return result


def profile_rows(profiler, steps: int, top: int = 16) -> list[dict]:
    """The top operators by self CPU time: [{"op", "calls_per_step", "self_us_per_step", "total_us_per_step"}]."""
    rows = [
        {
            "op": e.key,
            "calls_per_step": e.count / steps,
            "self_us_per_step": e.self_cpu_time_total / steps,
            "total_us_per_step": e.cpu_time_total / steps,
        }
        for e in profiler.key_averages()
    ]
    rows.sort(key=lambda r: r["self_us_per_step"], reverse=True)
    return rows[:top]
