"""Backpropagation checked against central differences, in float64.

    numerical df/dθ_i = (f(θ + h e_i) - f(θ - h e_i)) / 2h   (with Richardson's correction: ``difference``)
    rel_error         = ||numerical - analytic|| / max(||numerical|| + ||analytic||, floor)

Three levels, all on a float64 copy of the model at the run's own training samples (``check_run``):

- **each layer alone** (``check_layers``): at the input the layer really receives, f = <forward(x), g>
  for a random upstream gradient g, whose derivatives are exactly what ``backward(g)`` returns:
  d(input) (the array ``x``) and every parameter. A wrong d(input) is blamed on its own layer,
  the first layer's included;
- **the loss alone** (``check_loss_at``), at the model's predictions;
- **the whole model** (``check_model``): f = the loss, per parameter, as training sees it.

Each array gets its own step ``h = eps * max(1, rms(array))`` (a value of 1e5 moved by 1e-5 would
lose most of the step to rounding), taken exactly as the floats represent it. Large arrays are
checked on a random subset of entries, plus once along a random direction over all of them.

Rounding, not a bug, is all a correct backward can disagree by: f evaluated in float64 is off by
about ``ROUNDOFF * u * F`` (u = 2^-53, F the magnitude of what f adds up, including each input's
magnitude times its gradient), so each numerical entry is off by up to ``noise = ROUNDOFF u F / h``.
``floor = sqrt(n) noise / sqrt(u)``: an array whose gradients are that small (small init, saturated
units, classes that cancel) is measured against the floor, and rounding then reads as ~1e-8, not as
a failure (docs/numerics.md, "The run's gradient check").

Kinks only where there are kinks: an entry is skipped only when its perturbation changes the piece
a piecewise layer or loss is on (``Layer.branches``, ``Loss.branches``, from ``Layer.kinks``); the
skip looks at the forward pass alone, never at backward, so it cannot hide a wrong gradient.

The package, in the order the check is built up:

    differences.py  one array: steps, central differences (Richardson), the rounding floor, ``check_array``
    parts.py        each part of a model: a layer or merge node at its inputs, the loss, every parameter
                    through the loss (``check_layers``, ``check_model``; ``check_layer``, ``check_loss``
                    for plugin tests)
    run.py          what a run checks before it trains (``check_run`` -> ``Row``), the metrics it records
                    and the line that names a failure's culprit

Every name is importable from ``runner.core.gradcheck`` itself, as before the split.
"""

from runner.core.gradcheck.differences import (
    ROUNDOFF,
    Check,
    Eval,
    U,
    as_eval,
    check_array,
    compare,
    difference,
    floor_for,
    same_branches,
    step_for,
)
from runner.core.gradcheck.parts import (
    branches_of,
    check_layer,
    check_layer_at,
    check_layers,
    check_loss,
    check_loss_at,
    check_model,
    check_node_at,
    float64_twin,
    is_graph,
    layer_inputs,
    max_rel_error,
    node_labels,
    replaying_randomness,
    sensitivity,
)
from runner.core.gradcheck.run import Row, check_run, describe, failure_message, metrics_of

__all__ = [
    "ROUNDOFF",
    "U",
    "Check",
    "Eval",
    "Row",
    "as_eval",
    "branches_of",
    "check_array",
    "check_layer",
    "check_layer_at",
    "check_layers",
    "check_loss",
    "check_loss_at",
    "check_model",
    "check_node_at",
    "check_run",
    "compare",
    "describe",
    "difference",
    "failure_message",
    "float64_twin",
    "floor_for",
    "is_graph",
    "layer_inputs",
    "max_rel_error",
    "metrics_of",
    "node_labels",
    "replaying_randomness",
    "same_branches",
    "sensitivity",
    "step_for",
]
