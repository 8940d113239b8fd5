"""The docs keep up with the code: every built-in plugin has its row in docs/numerics.md."""

import pytest
from conftest import ROOT

from runner.core.schedules import SCHEDULES
from runner.plugins.discovery import load_registry

NUMERICS = (ROOT / "docs" / "numerics.md").read_text()


@pytest.mark.parametrize("kind", ["layer", "loss", "optimizer"])
def test_every_plugin_is_in_the_numerics_doc(kind):
    registry = load_registry()
    built_ins = [name for name in registry.names(kind) if registry.get(kind, name, "test").provider.distribution == "runner"]
    missing = [name for name in built_ins if f"`{name}`" not in NUMERICS]
    assert missing == [], f"docs/numerics.md lacks the {kind}s {missing}"


def test_every_schedule_is_in_the_numerics_doc():
    assert [name for name in SCHEDULES if f"`{name}`" not in NUMERICS] == []
