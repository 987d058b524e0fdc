# -*- coding: utf-8 -*-
# Copyright (c) cmdop.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    # The action group every cmdop.fleet module belongs to (meta/runtime.yml, action_groups.fleet).
    DOCUMENTATION = r"""
options: {}
"""

    ACTIONGROUP_FLEET = r"""
options: {}
attributes:
  action_group:
    description: Use C(group/cmdop.fleet.fleet) in C(module_defaults) to set defaults for this module.
    support: full
    membership:
      - cmdop.fleet.fleet
"""
