"""Documentation as users read it with ansible-doc: what it promises about the collection's metadata."""

from __future__ import annotations

import json
import typing as t
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_every_module_of_the_action_group_documents_its_membership(ansible_cli: t.Callable) -> None:
    """meta/runtime.yml's action group cmdop.fleet.fleet and the modules' action_group attribute say the same."""
    runtime = yaml.safe_load((ROOT / "meta" / "runtime.yml").read_text(encoding="utf-8"))
    group = runtime["action_groups"]["fleet"]
    modules = sorted(path.stem for path in (ROOT / "plugins" / "modules").glob("*.py") if path.stem != "__init__")
    redirects = {name for name, route in runtime.get("plugin_routing", {}).get("modules", {}).items() if "redirect" in route}
    assert set(modules) | redirects == set(group), "every module (and redirect) is in the group"
    result = ansible_cli("ansible-doc", ["--json"] + ["cmdop.fleet.%s" % name for name in modules])
    assert result.rc == 0, result.describe()
    docs = json.loads(result.stdout)
    for name in modules:
        attribute = docs["cmdop.fleet.%s" % name]["doc"]["attributes"].get("action_group")
        assert attribute, "cmdop.fleet.%s documents no action_group attribute" % name
        assert attribute["membership"] == ["cmdop.fleet.fleet"] and attribute["support"] == "full", (name, attribute)
        assert "group/cmdop.fleet.fleet" in attribute["description"]
