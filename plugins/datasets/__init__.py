"""Built-in datasets: MNIST, Fashion-MNIST, Iris, two synthetic regression sets and the spirals."""

from __future__ import annotations

from runner.api import PluginSpec, hookimpl

from .iris import IrisBinaryDataset, IrisDataset
from .mnist import FashionMnistDataset, MnistDataset
from .synthetic import LinearDataset, RegressionDataset, SpiralsDataset


@hookimpl
def runner_datasets():
    return [
        PluginSpec("mnist", MnistDataset, "handwritten digits, 28x28 grey, 10 classes (downloaded if missing)"),
        PluginSpec("fashion_mnist", FashionMnistDataset, "Zalando clothing images, 28x28 grey, 10 classes"),
        PluginSpec("iris", IrisDataset, "Fisher's Iris, 4 features, 3 species"),
        PluginSpec("iris_binary", IrisBinaryDataset, "Iris, setosa (1) vs the other species (0)"),
        PluginSpec("linear", LinearDataset, "y = slope * x + intercept, 1 feature"),
        PluginSpec("regression", RegressionDataset, "smooth nonlinear targets from a random teacher network"),
        PluginSpec("spirals", SpiralsDataset, "interleaved spiral arms in the plane, 2 features, 2 or more classes"),
    ]
