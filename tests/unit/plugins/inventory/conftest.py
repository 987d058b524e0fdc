"""Fixtures for the inventory plugin's unit tests: the plugin through ansible-core's loader, the emulator in a thread.

``inventory_loader`` finds ``cmdop.fleet.cmdop`` only through ansible-core's
collection finder (it reads the collection's metadata from the package the
finder loaded), so the finder is installed here, over build/collections (which
tests/conftest.py put on sys.path), as ``ansible-test units`` does. Modules of
``ansible_collections`` imported before without the finder are dropped first.
"""

from __future__ import annotations

import json
import os
import sys
import typing as t
from pathlib import Path

import pytest
import requests
import yaml

from ansible.utils.collection_loader import AnsibleCollectionConfig
from ansible.utils.collection_loader._collection_finder import _AnsibleCollectionFinder

EMULATOR_DIR = Path(__file__).resolve().parents[3] / "emulator"
REPO_ROOT = Path(__file__).resolve().parents[4]
COLLECTIONS_ROOT = REPO_ROOT / "build" / "collections"


def _install_collection_finder() -> None:
    if AnsibleCollectionConfig.collection_finder is not None:
        return
    for name in [name for name in sys.modules if name == "ansible_collections" or name.startswith("ansible_collections.")]:
        del sys.modules[name]
    _AnsibleCollectionFinder(paths=[str(COLLECTIONS_ROOT)], scan_sys_paths=False)._install()  # pylint: disable=protected-access


_install_collection_finder()

if str(EMULATOR_DIR) not in sys.path:
    sys.path.insert(0, str(EMULATOR_DIR))

import cmdop_emulator  # noqa: E402  pylint: disable=wrong-import-position
from ansible.inventory.data import InventoryData  # noqa: E402  pylint: disable=wrong-import-position
from ansible.inventory.manager import InventoryManager  # noqa: E402  pylint: disable=wrong-import-position
from ansible.parsing.dataloader import DataLoader  # noqa: E402  pylint: disable=wrong-import-position
from ansible.plugins.loader import inventory_loader  # noqa: E402  pylint: disable=wrong-import-position

# Every environment variable the plugin (or ansible-core's cache options) reads.
PLUGIN_ENV = ("CMDOP_API_URL", "CMDOP_TOKEN", "CMDOP_API_KEY", "ANSIBLE_INVENTORY_CACHE", "ANSIBLE_CACHE_PLUGIN", "ANSIBLE_INVENTORY_CACHE_PLUGIN",
              "ANSIBLE_CACHE_PLUGIN_CONNECTION", "ANSIBLE_INVENTORY_CACHE_CONNECTION", "ANSIBLE_CACHE_PLUGIN_TIMEOUT", "ANSIBLE_INVENTORY_CACHE_TIMEOUT")


class EmulatorThread:
    """The CMDOP emulator serving in a thread of the test process; real HTTP."""

    def __init__(self, seed: dict) -> None:
        self.server, self.url = cmdop_emulator.start_in_thread(seed)

    def admin(self, method: str, path: str, body: t.Any = None) -> t.Any:
        response = requests.request(method, self.url + "/_admin/" + path, json=body, timeout=30)
        response.raise_for_status()
        return response.json() if response.content else None

    def requests(self) -> t.List[dict]:
        """The API requests served so far (the admin API is not logged)."""
        return self.admin("GET", "requests")

    def clear_requests(self) -> None:
        self.admin("DELETE", "requests")

    def stop(self) -> None:
        self.server.shutdown()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No CMDOP_* or cache settings from the environment; HOME is an empty folder (no token file, no fleet file)."""
    for name in PLUGIN_ENV:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


@pytest.fixture
def start_emulator(clean_env: Path) -> t.Iterator[t.Callable[[dict], EmulatorThread]]:
    started: t.List[EmulatorThread] = []

    def start(seed: dict) -> EmulatorThread:
        emulator = EmulatorThread(seed)
        started.append(emulator)
        return emulator

    yield start
    for emulator in started:
        emulator.stop()


class PluginRun:
    """Runs the plugin as ansible-core loads it, on config files written in a temporary folder."""

    def __init__(self, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.folder = folder
        self.warnings: t.List[str] = []
        self.plugin = inventory_loader.get("cmdop.fleet.cmdop")
        assert self.plugin is not None, "inventory_loader cannot find cmdop.fleet.cmdop"
        self.module = sys.modules[type(self.plugin).__module__]
        monkeypatch.setattr(self.module.display, "warning", lambda msg, *args, **kwargs: self.warnings.append(msg))

    def config(self, name: str = "test.cmdop.yml", **options: t.Any) -> Path:
        path = self.folder / name
        path.write_text(yaml.safe_dump(dict({"plugin": "cmdop.fleet.cmdop"}, **options), sort_keys=False), encoding="utf-8")
        return path

    def fleet_file(self, entries: t.List[dict], name: str = "ssh_workspaces.json") -> Path:
        path = self.folder / name
        path.write_text(json.dumps({"active": "", "workspaces": entries}, indent=2), encoding="utf-8")
        os.chmod(path, 0o600)
        return path

    def parse(self, path: Path, cache: bool = True) -> InventoryData:
        """A fresh plugin instance parses ``path`` as the inventory manager would; errors propagate."""
        plugin = inventory_loader.get("cmdop.fleet.cmdop")
        inventory = InventoryData()
        plugin.parse(inventory, DataLoader(), str(path), cache=cache)
        plugin.update_cache_if_changed()
        self.plugin = plugin
        return inventory

    def manager(self, path: Path) -> InventoryManager:
        """The whole of ansible-core's inventory path (the auto plugin, the manager's wrapper); fails when the source did not parse."""
        manager = InventoryManager(loader=DataLoader(), sources=[str(path)])
        assert str(path) in manager._inventory.processed_sources, self.warnings  # pylint: disable=protected-access
        return manager


@pytest.fixture
def run(tmp_path: Path, clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> PluginRun:
    return PluginRun(tmp_path, monkeypatch)
