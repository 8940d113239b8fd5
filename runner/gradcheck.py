"""Where runner 0.1's docs pointed plugin authors; now ``runner.testing`` (check_layer, check_loss, check_model). Deprecated."""

import warnings

from runner.core.gradcheck import *  # noqa: F403

warnings.warn(
    "runner.gradcheck moved to runner.core.gradcheck; plugin tests import from runner.testing", DeprecationWarning, stacklevel=2
)
