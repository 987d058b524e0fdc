# -*- coding: utf-8 -*-
# Copyright (c) cmdop.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Demo helper: plays `cmdop login` and the server's side for scripts/demo.sh.

    prepare.py URL CMDOP_DIR                   write token_prod.json and a fleet file
    prepare.py URL CMDOP_DIR --server-changes  rename Team A, remove alice from Staging
"""

from __future__ import annotations

import json
import os
import sys
import time

import requests

USER = "u-alice"


def admin(url: str, method: str, path: str, body: dict | None = None) -> object:
    response = requests.request(method, url + "/_admin/" + path, json=body, timeout=10)
    response.raise_for_status()
    return response.json() if response.content else None


def fleet(url: str, slug: str) -> dict:
    state = admin(url, "GET", "state")
    return next(item for item in state["fleets"] if item["slug"] == slug)


def write_json(path: str, data: dict) -> None:
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2)
        handle.write("\n")


def login(url: str, cmdop_dir: str) -> None:
    token = admin(url, "POST", "tokens", {"user": USER, "expires_in": 3600})
    # A fleet alice is not a member of but holds an API key for: API-key-only, local by design.
    shared_key = fleet(url, "bob-personal")["api_keys"][0]
    token["expires_at"] = time.time() + token["expires_in"]
    write_json(os.path.join(cmdop_dir, "token_prod.json"), token)
    write_json(
        os.path.join(cmdop_dir, "ssh_workspaces.json"),
        {
            "active": "home-lab",
            "workspaces": [
                {"name": "home-lab", "api_key": shared_key, "server": ""},
            ],
        },
    )
    print("wrote %s/token_prod.json and a fleet file with one API-key-only fleet (home-lab, active)" % cmdop_dir)


def server_changes(url: str) -> None:
    admin(url, "PATCH", "fleets/" + fleet(url, "team-a")["id"], {"name": "Team A (platform)"})
    admin(url, "DELETE", "members", {"fleet": fleet(url, "staging")["id"], "user": USER})
    print("renamed Team A to 'Team A (platform)'; removed alice from Staging")


def main(argv: list) -> None:
    url, cmdop_dir = argv[1], argv[2]
    if "--server-changes" in argv:
        server_changes(url)
    else:
        login(url, cmdop_dir)


if __name__ == "__main__":
    main(sys.argv)
