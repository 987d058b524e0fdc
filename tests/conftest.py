"""Shared pytest setup for tests/unit and tests/e2e.

Makes ``ansible_collections.cmdop.fleet`` importable as this checkout: runs
scripts/collection-layout.sh (build/collections/ansible_collections/cmdop/fleet
-> repo root) and puts build/collections first on sys.path, the way
``ansible-test units`` would see the collection.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def _collections_root() -> str:
    out = subprocess.run([str(REPO_ROOT / "scripts" / "collection-layout.sh")], check=True, capture_output=True, text=True).stdout
    return out.strip().splitlines()[-1]


COLLECTIONS_ROOT = _collections_root()
if COLLECTIONS_ROOT not in sys.path:
    sys.path.insert(0, COLLECTIONS_ROOT)
