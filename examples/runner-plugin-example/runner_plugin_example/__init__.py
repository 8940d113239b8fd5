"""runner-plugin-example: one runner plugin of each kind, and Hydra configs for them.

- layer ``prelu``: a ReLU whose negative slope is learned (``layers.PReLU``);
- loss ``squared_hinge``: mean of max(0, 1 - s z)^2 on a binary task's scores (``losses.SquaredHinge``);
- optimizer ``lion``: the sign-of-momentum update of Chen et al. 2023 (``optimizers.Lion``);
- dataset ``two_moons``: two interleaving half circles, generated from the run's seed (``datasets.TwoMoons``).

``plugin`` is the entry point runner loads; ``conf/`` holds the config groups
(``dataset/two_moons``, ``loss/squared_hinge``, ``optimizer/lion``, ``experiment/two_moons``).
"""

__version__ = "0.1.0"
