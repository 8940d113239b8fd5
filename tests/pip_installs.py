"""Real plugin distributions for the tests: written to disk, built and installed by pip.

``pip install --no-deps --no-build-isolation --no-index --target DIR``: a real wheel build and
install that needs no network and leaves the test environment alone; a subprocess with
``PYTHONPATH=DIR`` sees the distribution exactly as if it were installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import PLUGIN_SWITCHES, ROOT

EXAMPLE = ROOT / "examples" / "runner-plugin-example"


def pip_install(source: Path, target: Path) -> Path:
    """Build and install the distribution at ``source`` into ``target`` (from a copy, so the
    source tree gets no build/ or .egg-info); returns ``target``."""
    copy = target.parent / f"{target.name}-src"
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".pytest_cache"))
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--root-user-action=ignore",
            "--target",
            str(target),
            str(copy),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return target


def write_distribution(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    return root


def pyproject(
    name: str, version: str, entry_points: dict[str, dict[str, str]], modules: list[str] = (), packages: list[str] = ()
) -> str:
    """A minimal setuptools pyproject.toml: single-module ``modules``, or ``packages`` with their conf/*/*.yaml."""
    lines = [
        "[build-system]",
        'requires = ["setuptools>=68"]',
        'build-backend = "setuptools.build_meta"',
        "",
        "[project]",
        f'name = "{name}"',
        f'version = "{version}"',
        "",
    ]
    for group, eps in entry_points.items():
        lines += [f'[project.entry-points."{group}"]', *(f'{k} = "{v}"' for k, v in eps.items()), ""]
    lines += [
        "[tool.setuptools]",
        f"py-modules = {list(modules)}".replace("'", '"'),
        f"packages = {list(packages)}".replace("'", '"'),
        "",
    ]
    if packages:
        lines += ["[tool.setuptools.package-data]", *(f'{p} = ["conf/*/*.yaml"]' for p in packages)]
    return "\n".join(lines) + "\n"


def broken_distribution(root: Path) -> Path:
    """runner-broken-plugin 0.0.1: entry point ``import_error`` raises on import, ``hook_error``
    raises from its hook, ``working`` provides the layer ``still_works``."""
    return write_distribution(
        root,
        {
            "pyproject.toml": pyproject(
                "runner-broken-plugin",
                "0.0.1",
                {
                    "runner.plugins": {
                        "import_error": "runner_broken_import",
                        "hook_error": "runner_broken_hook",
                        "working": "runner_broken_working",
                    }
                },
                modules=["runner_broken_import", "runner_broken_hook", "runner_broken_working"],
            ),
            "runner_broken_import.py": """
            import numpy  # noqa: F401
            raise RuntimeError("this plugin is broken on purpose")
        """,
            "runner_broken_hook.py": """
            from runner.api import hookimpl

            @hookimpl
            def runner_losses():
                raise ValueError("the hook is broken on purpose")
        """,
            "runner_broken_working.py": """
            from runner.api import PluginSpec, hookimpl
            from runner.builtins.layers import Identity

            @hookimpl
            def runner_layers():
                return [PluginSpec("still_works", Identity, "the working entry point of a partly broken distribution")]
        """,
        },
    )


def duplicate_distribution(root: Path) -> Path:
    """runner-duplicate-prelu 2.0.0: a layer named 'prelu', as runner-plugin-example has."""
    return write_distribution(
        root,
        {
            "pyproject.toml": pyproject(
                "runner-duplicate-prelu",
                "2.0.0",
                {"runner.plugins": {"layers": "runner_duplicate_prelu"}},
                modules=["runner_duplicate_prelu"],
            ),
            "runner_duplicate_prelu.py": """
            from runner.api import PluginSpec, hookimpl
            from runner.builtins.layers import LeakyReLU

            @hookimpl
            def runner_layers():
                return [PluginSpec("prelu", LeakyReLU, "a second prelu")]
        """,
        },
    )


def clashing_config_distribution(root: Path) -> Path:
    """runner-config-clash 0.1.0: ships dataset/iris.yaml, which runner's conf/ has too."""
    return write_distribution(
        root,
        {
            "pyproject.toml": pyproject(
                "runner-config-clash",
                "0.1.0",
                {"runner.configs": {"conf": "runner_config_clash.conf"}},
                packages=["runner_config_clash"],
            ),
            "runner_config_clash/__init__.py": "",
            "runner_config_clash/conf/dataset/iris.yaml": "name: iris\n",
        },
    )


def softsign_distribution(root: Path) -> Path:
    """runner-softsign 0.1.0: a learned softsign layer ``softsign`` (correct), and ``softsign_bad_x``
    whose backward returns d(input) doubled (its parameter's gradient is right)."""
    return write_distribution(
        root,
        {
            "pyproject.toml": pyproject(
                "runner-softsign", "0.1.0", {"runner.plugins": {"layers": "runner_softsign"}}, modules=["runner_softsign"]
            ),
            "runner_softsign.py": '''
            import numpy as np
            from runner.api import Layer, PluginSpec, hookimpl

            class Softsign(Layer):
                """y = x / (1 + |a x|) with a learned per-feature a; dy/dx = 1 / (1 + |a x|)^2."""

                kinks = (0.0,)

                def build(self, input_shape, rng, dtype):
                    self.params = {"a": np.full(input_shape, 1.5, dtype)}
                    self.grads = {"a": np.zeros(input_shape, dtype)}
                    return input_shape

                def forward(self, x, training):
                    self.x, self.d = x, 1.0 + np.abs(self.params["a"] * x)
                    return x / self.d

                def backward(self, dout):
                    a, x, d2 = self.params["a"], self.x, self.d ** 2
                    self.grads["a"][...] = np.sum(-dout * x * np.abs(x) * np.sign(a) / d2, axis=0)
                    return dout / d2

            class DoubledInputGrad(Softsign):
                def backward(self, dout):
                    return 2.0 * super().backward(dout)

            @hookimpl
            def runner_layers():
                return [PluginSpec("softsign", Softsign, "learned softsign"),
                        PluginSpec("softsign_bad_x", DoubledInputGrad, "learned softsign, d(input) doubled")]
        ''',
        },
    )


def plugin_env(*sites: Path, **variables: str) -> dict[str, str]:
    """Environment for a subprocess that sees the distributions installed in ``sites``."""
    return {"PYTHONPATH": os.pathsep.join(map(str, sites)), **variables}


def clean_environ() -> dict[str, str]:
    """This process's environment without the developer's own plugin switches."""
    return {k: v for k, v in os.environ.items() if k not in PLUGIN_SWITCHES}


def list_plugins(cwd: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """``python -m runner.plugins ARGS`` in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "runner.plugins", *args],
        cwd=cwd,
        env={**clean_environ(), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
