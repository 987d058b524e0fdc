# -*- coding: utf-8 -*-
# Copyright (c) cmdop.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The oldest Python the modules run on, and a clear failure on an older one.

The rest of module_utils needs Python 3.7 just to compile (``from __future__ import
annotations``), so on an older target the modules would die with a bare SyntaxError.
They call ``require_python()`` before importing it. This file (and each module up to
that call) must therefore parse on the Pythons it turns away: no annotations, nothing
newer than Python 3.5's syntax (tests/unit/test_target_python.py checks this).
Private to the collection.
"""

import json
import sys

# Also in tests/config.yml (modules: python_requires) and README.md's Requirements.
MINIMUM_PYTHON = (3, 7)


def too_old(version_info):
    """The failure message for a Python older than MINIMUM_PYTHON, or None. version_info: sys.version_info or a tuple."""
    if tuple(version_info[:2]) >= MINIMUM_PYTHON:
        return None
    return (
        "the cmdop.fleet modules need Python %d.%d or later on the target host, and this is Python %d.%d; "
        "set ansible_python_interpreter to a newer Python that has the libraries requests, requests-oauthlib and jsonschema"
        % (MINIMUM_PYTHON + tuple(version_info[:2]))
    )


def require_python():
    """On too old a Python, fail the task the way AnsibleModule would (JSON with failed and msg on stdout) and exit.

    There is no AnsibleModule yet (this runs at import), so this does what ansible.module_utils.basic does
    for its own minimum Python: print the result and exit.
    """
    message = too_old(sys.version_info)
    if message is not None:
        print(json.dumps({"failed": True, "msg": message}))  # pylint: disable=ansible-bad-function
        sys.exit(1)  # pylint: disable=ansible-bad-function
