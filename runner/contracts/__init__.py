"""Contract test classes: the checks every plugin of one kind must pass, ready for pytest.

A plugin author subclasses one in a test module, under a name pytest collects (``Test...``), and
sets the factory, its options and the shapes as class attributes::

    from runner.testing import LayerContract

    class TestPReLU(LayerContract):
        factory = PReLU
        options = {"init": 0.3}
        input_shape = (7,)

pytest then runs every ``test_*`` method of the contract on that plugin. Each method's docstring
says what its check proves; each failure names the array, the mode and the figures. The contracts
themselves are not collected (``__test__ = False``); every subclass is (``__init_subclass__``).
Modelled on chainer's ``FunctionTestCase``.
"""

from runner.contracts.dataset import DatasetContract
from runner.contracts.layer import LayerContract
from runner.contracts.loss import LossContract
from runner.contracts.merge import MergeLayerContract
from runner.contracts.optimizer import OptimizerContract

__all__ = ["DatasetContract", "LayerContract", "LossContract", "MergeLayerContract", "OptimizerContract"]
