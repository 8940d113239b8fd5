"""Learning-rate schedules and gradient clipping: formulas, PyTorch where it has the same thing, and a real run."""

import math
import re

import numpy as np
import pytest

from runner.api import RunnerError
from runner.core.schedules import make_schedule
from runner.core.train import clip_by_global_norm


def lrs(name, total=100, lr0=0.1, **options):
    schedule = make_schedule(name, lr0, total, options)
    return [schedule(t) for t in range(1, total + 1)]


def test_constant_and_step():
    assert lrs("constant") == [0.1] * 100
    stepped = lrs("step", step_size=30, gamma=0.1)
    assert stepped[0] == stepped[29] == 0.1
    assert stepped[30] == pytest.approx(0.01) and stepped[60] == pytest.approx(0.001)


def test_cosine_ends_at_min_lr_and_warmup_ramps():
    values = lrs("cosine", total=100, min_lr=0.001, warmup=10)
    assert values[0] == pytest.approx(0.01) and values[9] == values[10] == pytest.approx(0.1)
    assert values[-1] == pytest.approx(0.001)
    assert all(a >= b for a, b in zip(values[9:], values[10:]))
    assert lrs("linear_warmup", warmup=4)[:5] == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1])


def test_schedules_match_pytorch():
    torch = pytest.importorskip("torch", reason="PyTorch not installed: pip install torch==2.13.0")
    param = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))

    def torch_lrs(make, total=100):
        opt = torch.optim.SGD([param], lr=0.1)
        sched = make(opt)
        out = []
        for _ in range(total):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return out

    steps = torch_lrs(lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=30, gamma=0.1))
    np.testing.assert_allclose(lrs("step", step_size=30, gamma=0.1), steps, rtol=1e-12)
    # torch's CosineAnnealingLR at epoch e is our step t = e + 1; over T = 100 steps, T_max = 99
    cos = torch_lrs(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=99, eta_min=0.001))
    np.testing.assert_allclose(lrs("cosine", min_lr=0.001), cos, rtol=1e-10)


@pytest.mark.parametrize(
    "name, options, key",
    [
        ("step", {"step_size": 0}, "schedule.step_size"),
        ("step", {"gamma": 2}, "schedule.gamma"),
        ("cosine", {"min_lr": 1.0}, "schedule.min_lr"),
        ("linear_warmup", {"warmup": -1}, "schedule.warmup"),
        ("cosine", {"warmupp": 3}, "schedule (cosine)"),
        ("exponential", {}, "schedule.name: unknown schedule 'exponential'"),
    ],
)
def test_bad_schedule_options_name_the_key(name, options, key):
    with pytest.raises(RunnerError, match=re.escape(key)):
        make_schedule(name, 0.1, 100, options)


def test_clip_by_global_norm_matches_pytorch():
    rng = np.random.default_rng(0)
    grads = {"a": rng.standard_normal((4, 3)), "b": rng.standard_normal(3)}
    norm = math.sqrt(sum(np.sum(g**2) for g in grads.values()))
    expected = {k: v * (0.5 / (norm + 1e-6)) for k, v in grads.items()}
    torch = pytest.importorskip("torch", reason="PyTorch not installed: pip install torch==2.13.0")
    tensors = [torch.nn.Parameter(torch.zeros(g.shape, dtype=torch.float64)) for g in grads.values()]
    for t, g in zip(tensors, grads.values()):
        t.grad = torch.tensor(g)
    torch_norm = torch.nn.utils.clip_grad_norm_(tensors, 0.5)
    assert clip_by_global_norm(grads, 0.5) == pytest.approx(float(torch_norm), rel=1e-12)
    for t, (k, g) in zip(tensors, grads.items()):
        np.testing.assert_allclose(g, expected[k], rtol=1e-12)
        np.testing.assert_allclose(g, t.grad.numpy(), atol=1e-12)


def test_clip_leaves_small_gradients_alone():
    grads = {"a": np.array([0.3, 0.4])}
    assert clip_by_global_norm(grads, 1.0) == pytest.approx(0.5)
    np.testing.assert_array_equal(grads["a"], [0.3, 0.4])


def test_a_run_logs_the_scheduled_learning_rate(runner_cli):
    result = runner_cli("+experiment=iris_binary", "schedule=cosine", "schedule.min_lr=0.001", "trainer.clip_grad_norm=5")
    assert result.proc.returncode == 0, result.proc.stderr[-2000:]
    run = result.only_run("iris_binary")
    history = sorted(result.client().get_metric_history(run.info.run_id, "train/lr"), key=lambda m: m.step)
    assert [m.step for m in history][:3] == [10, 20, 30]
    assert history[0].value == pytest.approx(0.001 + 0.099 * (1 + math.cos(math.pi * 9 / 999)) / 2)
    assert history[-1].value == pytest.approx(0.001)
    assert "train/grad_norm" in run.data.metrics
    assert run.data.params["schedule.name"] == "cosine"
