"""What `pip install runner` puts in site-packages: runner's own names only.

The built-ins live in the checkout's top-level plugins/ folder but install as ``runner.builtins``; the
configs in conf/ as ``runner.conf``. No top-level ``plugins`` import name is claimed, so another
distribution's ``plugins`` package cannot collide with runner's.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_plugins_is_not_an_import_name_outside_the_checkout(tmp_path):
    code = "import importlib.util as u; print(u.find_spec('plugins'), u.find_spec('runner.builtins.layers').origin)"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=True)
    missing, layers = out.stdout.split()
    assert missing == "None"
    assert layers == str(ROOT / "plugins" / "layers" / "__init__.py")


def test_the_wheel_holds_runner_builtins_and_runner_conf_and_no_top_level_plugins(tmp_path):
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if built.returncode != 0 and "No module named" in built.stderr:
        pytest.skip(f"cannot build a wheel here: {built.stderr.strip()[-200:]}")
    assert built.returncode == 0, built.stderr[-3000:]
    [wheel] = tmp_path.glob("runner-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/", 1)[0] for n in names}
    assert tops == {"runner", "hydra_plugins", next(t for t in tops if t.endswith(".dist-info"))}, tops
    for expected in (
        "runner/builtins/layers/__init__.py",
        "runner/builtins/datasets/iris.csv",
        "runner/conf/config.yaml",
        "runner/conf/experiment/mnist.yaml",
        "runner/tracking/writer.py",
    ):
        assert expected in names, expected
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "layers = runner.builtins.layers" in entry_points
