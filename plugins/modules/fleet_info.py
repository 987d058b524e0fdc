#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) cmdop.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: fleet_info
short_description: List the user's CMDOP fleets, and optionally their machines
version_added: 0.1.0
description:
  - Lists the fleets of the OAuth token's user, as C(GET /api/workspaces/workspaces/) returns them.
  - "Read-only. Run it once on the controller (C(delegate_to: localhost), C(run_once: true)) and pass RV(fleets)
    to O(cmdop.fleet.sync#module:fleets) so that syncing many hosts takes one API call."
author:
  - cmdop.fleet maintainers (@cmdop)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - cmdop.fleet.attributes.actiongroup_fleet
  - cmdop.fleet.api
attributes:
  check_mode:
    support: full
    details:
      - The module reads only; in check mode it does the same. A refreshed OAuth token is still saved to O(token_file).
  diff_mode:
    support: none
  platform:
    support: full
    platforms: posix
options:
  machines:
    description:
      - Also list the machines the token can see (every page), returned as RV(machines).
    type: bool
    default: false
notes:
  - Fleet enumeration requires OAuth. An API key cannot list fleets; the module says so when given one.
  - This module is in the action group C(cmdop.fleet.fleet), so C(module_defaults) can set O(api_url) and O(mode) once.
seealso:
  - module: cmdop.fleet.sync
"""

EXAMPLES = r"""
- name: List the fleets once, on the controller
  cmdop.fleet.fleet_info:
    token: "{{ vault_cmdop_token }}"
  delegate_to: localhost
  run_once: true
  register: account

- name: Show the fleets' names
  ansible.builtin.debug:
    msg: "{{ account.fleets | map(attribute='name') }}"

- name: List the fleets and their machines from the dev server
  cmdop.fleet.fleet_info:
    mode: dev
    machines: true
  register: dev_account
"""

RETURN = r"""
fleets:
  description: The user's fleets, as the API lists them.
  returned: success
  type: list
  elements: dict
  sample:
    - id: 7f0c8f5e-0c7a-4a3e-8d7e-8b1a4c2d9e01
      name: Team A
      slug: team-a
      type: team
      plan: pro
      created_at: "2026-01-01T00:00:00Z"
      member_count: 3
      machine_count: 12
machines:
  description: The machines the token can see; each names its fleet's id in C(workspace).
  returned: when O(machines=true)
  type: list
  elements: dict
  sample:
    - id: 0d6b3a8e-7a8f-4f43-9a0e-1c2b3d4e5f60
      workspace: 7f0c8f5e-0c7a-4a3e-8d7e-8b1a4c2d9e01
      name: web-1
      hostname: web-1.example.net
      status: online
token_refreshed:
  description: Whether the OAuth token was refreshed (and written back to O(token_file)) during this run.
  returned: always
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cmdop.fleet.plugins.module_utils._base import (
    API_ARGUMENT_SPEC,
    check_libraries,
    failing_clearly,
    login_hint,
    make_client,
    resolve_credential,
)


def main() -> None:
    module = AnsibleModule(argument_spec=dict(API_ARGUMENT_SPEC, machines=dict(type="bool", default=False)), supports_check_mode=True)
    check_libraries(module)
    result = {"changed": False, "token_refreshed": False}
    with failing_clearly(module, "fleet_info", result):
        credential = resolve_credential(module)
        if credential is None:
            module.fail_json(msg="fleet_info: no OAuth credential (token, CMDOP_TOKEN or token file): fleet enumeration requires OAuth; %s"
                             % login_hint(module.params["mode"]))
        client = make_client(module)
        try:
            result["fleets"] = client.list_fleets(credential)
            if module.params["machines"]:
                result["machines"] = client.list_machines(credential)
        finally:
            result["token_refreshed"] = credential.refreshed
    module.exit_json(**result)


if __name__ == "__main__":
    main()
