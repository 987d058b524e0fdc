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


def test_the_readme_lists_each_role_variable_with_its_default() -> None:
    """The README's role tables and the roles' argument specs (what ansible-doc shows) name the same variables and defaults."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for role in ("fleet_sync", "fleet_inventory"):
        section = readme.split("### `cmdop.fleet.%s`" % role, 1)[1].split("\n#", 1)[0]
        rows = {}
        for line in section.splitlines():
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if len(cells) == 3 and cells[0].startswith("`%s_" % role):
                rows[cells[0].strip("`")] = cells[1]
        spec = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text(encoding="utf-8"))
        options = spec["argument_specs"]["main"]["options"]
        defaults = yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text(encoding="utf-8"))
        assert set(rows) == set(options) == set(defaults), (role, set(rows) ^ set(options), set(options) ^ set(defaults))
        for name, shown in rows.items():
            default = options[name]["default"]
            assert default == defaults[name], (name, default, defaults[name])
            expected = "empty" if default == "" else "`%s`" % (json.dumps(default) if isinstance(default, (bool, dict)) else default)
            assert shown == expected, (name, shown, expected)
