"""The docs keep up with the code: every registered plugin has its row in docs/numerics.md."""
import pytest

from conftest import ROOT
from runner.registry import load_registry
from runner.schedules import SCHEDULES

NUMERICS = (ROOT / "docs" / "numerics.md").read_text()


@pytest.mark.parametrize("kind", ["layer", "loss", "optimizer"])
def test_every_plugin_is_in_the_numerics_doc(kind):
    missing = [name for name in load_registry().names(kind) if f"`{name}`" not in NUMERICS]
    assert missing == [], f"docs/numerics.md lacks the {kind}s {missing}"


def test_every_schedule_is_in_the_numerics_doc():
    assert [name for name in SCHEDULES if f"`{name}`" not in NUMERICS] == []
