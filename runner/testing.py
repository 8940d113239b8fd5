"""What plugin authors use in their own tests: the gradient checker runner uses on every run."""
from runner.gradcheck import Check, check_layer, check_model, max_rel_error

__all__ = ["Check", "check_layer", "check_model", "max_rel_error"]
