"""Where runner 0.1's docs pointed plugin authors; now ``runner.testing`` (build_model, Sequential). Deprecated."""

import warnings

from runner.core.model import *  # noqa: F403

warnings.warn(
    "runner.model moved to runner.core.model; plugin tests import from runner.testing", DeprecationWarning, stacklevel=2
)
