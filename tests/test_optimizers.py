"""Built-in optimizers: against torch.optim step by step, learning-rate changes, state round trips, options."""

import functools
import warnings

import numpy as np
import pytest

from runner.api import RunnerError
from runner.builtins import optimizers, optimizers_fast
from runner.builtins.optimizers import SGD, Adagrad, Adam, AdamW, Momentum, Nesterov, RMSprop, runner_optimizers

STEPS = 20
TORCH_TOL = 1e-10  # absolute, parameters after STEPS steps, float64

# name -> (our factory, torch.optim class name, torch options), each with the same options; the factory
# makes the reference class, or with cls= another (the registered fast variant, optimizers.FAST)
CASES = {
    "sgd": (lambda cls=SGD, **o: cls(lr=0.1, **o), "SGD", dict(lr=0.1)),
    "momentum": (lambda cls=Momentum, **o: cls(lr=0.05, momentum=0.9, **o), "SGD", dict(lr=0.05, momentum=0.9)),
    "nesterov": (lambda cls=Nesterov, **o: cls(lr=0.05, momentum=0.9, **o), "SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    "adagrad": (lambda cls=Adagrad, **o: cls(lr=0.1, **o), "Adagrad", dict(lr=0.1)),
    "rmsprop": (lambda cls=RMSprop, **o: cls(lr=0.01, **o), "RMSprop", dict(lr=0.01)),
    "adam": (lambda cls=Adam, **o: cls(lr=0.01, beta1=0.8, beta2=0.99, **o), "Adam", dict(lr=0.01, betas=(0.8, 0.99))),
    "adamw": (lambda cls=AdamW, **o: cls(lr=0.01, **o), "AdamW", dict(lr=0.01)),  # default weight_decay 0.01 on both sides
}
WEIGHT_DECAYS = [None, 0.1]  # None: each side's default


def problem(seed=0, dtype=np.float64):
    """Two parameters, keyed like the runner's, and STEPS random gradients for them."""
    rng = np.random.default_rng(seed)
    params = {"0.linear.W": rng.standard_normal((5, 3)), "0.linear.b": rng.standard_normal(3)}
    grads = [{name: rng.standard_normal(p.shape) for name, p in params.items()} for _ in range(STEPS)]
    cast = lambda d: {k: v.astype(dtype) for k, v in d.items()}  # noqa: E731
    return cast(params), [cast(g) for g in grads]


def run(optimizer, params, grads, lrs=None):
    for i, g in enumerate(grads):
        if lrs is not None:
            optimizer.lr = lrs[i]
        optimizer.step(params, g)
    return params


def run_torch(torch_name, options, params, grads, lrs=None):
    torch = pytest.importorskip("torch", reason="PyTorch not installed: pip install torch==2.13.0")
    tensors = {name: torch.tensor(p, dtype=torch.float64, requires_grad=True) for name, p in params.items()}
    opt = getattr(torch.optim, torch_name)(list(tensors.values()), **options)
    for i, g in enumerate(grads):
        if lrs is not None:
            opt.param_groups[0]["lr"] = lrs[i]
        for name, t in tensors.items():
            t.grad = torch.tensor(g[name], dtype=torch.float64)
        opt.step()
    return {name: t.detach().numpy() for name, t in tensors.items()}


def max_abs_diff(a, b):
    return max(float(np.max(np.abs(a[k] - b[k]))) for k in a)


@pytest.mark.parametrize("weight_decay", WEIGHT_DECAYS, ids=["default_wd", "wd0.1"])
@pytest.mark.parametrize("name", list(CASES))
def test_matches_torch_optim(name, weight_decay):
    make, torch_name, torch_options = CASES[name]
    wd = {} if weight_decay is None else {"weight_decay": weight_decay}
    params, grads = problem()
    start = {k: v.copy() for k, v in params.items()}
    ours = run(make(**wd), params, grads)
    theirs = run_torch(torch_name, {**torch_options, **wd}, start, grads)
    assert max_abs_diff(ours, start) > 1e-3  # the parameters did move
    assert max_abs_diff(ours, theirs) <= TORCH_TOL


@pytest.mark.parametrize("name", list(CASES))
def test_lr_changes_between_steps_are_honoured(name):
    make, torch_name, torch_options = CASES[name]
    params, grads = problem(seed=1)
    start = {k: v.copy() for k, v in params.items()}
    lrs = [torch_options["lr"] * (0.5 + 0.1 * (i % 7)) for i in range(STEPS)]  # a ragged schedule
    ours = run(make(), params, grads, lrs)
    theirs = run_torch(torch_name, torch_options, start, grads, lrs)
    assert max_abs_diff(ours, theirs) <= TORCH_TOL
    constant = run(make(), {k: v.copy() for k, v in start.items()}, grads)
    assert max_abs_diff(ours, constant) > 1e-6  # the schedule made a difference


@pytest.mark.parametrize("name", list(CASES))
def test_state_dict_round_trip_continues_bit_identically(name):
    make = CASES[name][0]
    params, grads = problem(seed=2, dtype=np.float32)
    grads = grads + problem(seed=3, dtype=np.float32)[1]  # 2 x STEPS gradients
    straight = run(make(weight_decay=0.05), {k: v.copy() for k, v in params.items()}, grads)

    first = make(weight_decay=0.05)
    halfway = run(first, params, grads[:STEPS])
    first.lr *= 0.5  # a schedule changed it: the state carries it
    state = first.state_dict()
    run(first, {k: v.copy() for k, v in halfway.items()}, grads[STEPS:])  # stepping on must not touch the saved state
    assert set(state) >= {"lr", "step"} and state["step"] == STEPS
    second = make(weight_decay=0.05)
    second.load_state_dict(state)
    assert second.lr == first.lr
    second.lr *= 2  # back to the schedule of the straight run
    resumed = run(second, halfway, grads[STEPS:])
    for k in straight:
        np.testing.assert_array_equal(resumed[k], straight[k])


def test_state_dict_is_plain_data():
    opt = Adam()
    params, grads = problem()
    run(opt, params, grads[:3])
    state = opt.state_dict()
    assert state["lr"] == 0.001 and state["step"] == 3 and type(state["step"]) is int
    assert set(state["m"]) == set(state["v"]) == {"0.linear.W", "0.linear.b"}
    assert all(type(a) is np.ndarray for a in state["m"].values())


def test_load_state_dict_missing_buffers_is_a_runner_error():
    with pytest.raises(RunnerError, match="missing 'v'"):
        Momentum().load_state_dict({"lr": 0.1, "step": 3})


@pytest.mark.parametrize("name", list(CASES))
def test_float32_params_stay_float32(name):
    make = CASES[name][0]
    params, grads = problem(seed=4, dtype=np.float32)
    ids = {k: id(v) for k, v in params.items()}
    opt = make(weight_decay=0.01)
    run(opt, params, grads)
    assert all(p.dtype == np.float32 for p in params.values())
    assert {k: id(v) for k, v in params.items()} == ids  # updated in place
    for buffers in opt.buffers.values():
        assert all(b.dtype == np.float32 for b in buffers.values())
    reference = run(make(weight_decay=0.01), problem(seed=4)[0], problem(seed=4)[1])
    assert max_abs_diff(params, reference) < 1e-4


def test_gradients_are_not_modified():
    params, grads = problem()
    saved = [{k: v.copy() for k, v in g.items()} for g in grads]
    for make, _, _ in CASES.values():
        run(make(weight_decay=0.1), {k: v.copy() for k, v in params.items()}, grads)
    for g, s in zip(grads, saved):
        for k in g:
            np.testing.assert_array_equal(g[k], s[k])


@pytest.mark.parametrize("weight_decay", WEIGHT_DECAYS, ids=["default_wd", "wd0.1"])
@pytest.mark.parametrize("name", list(CASES))
def test_large_and_non_contiguous_parameters_match_torch_too(name, weight_decay, monkeypatch):
    """The registered fast variant: above CHUNK entries a parameter is updated in pieces (flat views); a
    non-contiguous one as a whole."""
    monkeypatch.setattr(optimizers_fast, "CHUNK", 16)
    reference, torch_name, torch_options = CASES[name]
    make = functools.partial(reference, cls=optimizers.FAST[type(reference())])
    wd = {} if weight_decay is None else {"weight_decay": weight_decay}
    rng = np.random.default_rng(5)
    params = {"W": rng.standard_normal((5, 7)), "b": rng.standard_normal(3), "T": np.asfortranarray(rng.standard_normal((6, 4)))}
    grads = [{k: rng.standard_normal(p.shape) for k, p in params.items()} for _ in range(STEPS)]
    start = {k: v.copy() for k, v in params.items()}
    ours = run(make(**wd), params, grads)
    assert not ours["T"].flags.c_contiguous
    theirs = run_torch(torch_name, {**torch_options, **wd}, start, grads)
    assert max_abs_diff(ours, theirs) <= TORCH_TOL


@pytest.mark.parametrize("name", list(CASES))
def test_a_schedule_may_take_lr_to_zero(name):
    make = CASES[name][0]
    params, grads = problem(seed=6, dtype=np.float32)
    opt = make()
    run(opt, params, grads[:2])
    before = {k: v.copy() for k, v in params.items()}
    opt.lr = 0.0  # the cosine schedule's last step
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run(opt, params, grads[2:4])
    for k in params:
        np.testing.assert_array_equal(params[k], before[k])


def test_sgd_step_by_hand():
    w = np.array([1.0, 2.0])
    SGD(lr=0.5, weight_decay=0.5).step({"w": w}, {"w": np.array([2.0, -2.0])})
    np.testing.assert_array_equal(w, [1.0 - 0.5 * 2.5, 2.0 - 0.5 * (-1.0)])


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize(
    "options, option",
    [
        ({"lr": 0}, "lr"),
        ({"lr": -1}, "lr"),
        ({"lr": "abc"}, "lr"),
        ({"lr": True}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"weight_decay": -1}, "weight_decay"),
        ({"weight_decay": "abc"}, "weight_decay"),
    ],
)
def test_bad_common_options_are_runner_errors_naming_the_option(name, options, option):
    opt_type = type(CASES[name][0]())
    with pytest.raises(RunnerError, match=f"^{option}: expected a"):
        opt_type(**options)


def test_lr_message():
    with pytest.raises(RunnerError, match=r"^lr: expected a positive number, got 'abc'$"):
        Adam(lr="abc")


@pytest.mark.parametrize(
    "make, option",
    [
        (lambda: Adam(beta1=1.5), "beta1"),
        (lambda: AdamW(beta1=-0.1), "beta1"),
        (lambda: Adam(beta2=1.0), "beta2"),
        (lambda: Adam(eps=0), "eps"),
        (lambda: Adagrad(eps=-1), "eps"),
        (lambda: RMSprop(alpha=1.2), "alpha"),
        (lambda: Momentum(momentum=1.0), "momentum"),
        (lambda: Nesterov(momentum="high"), "momentum"),
    ],
)
def test_bad_specific_options_are_runner_errors_naming_the_option(make, option):
    with pytest.raises(RunnerError, match=f"^{option}: expected a"):
        make()


def test_every_optimizer_is_registered_with_a_description():
    specs = {spec.name: spec for spec in runner_optimizers()}
    assert set(specs) == {"sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw"}
    assert all(spec.description for spec in specs.values())
