# -*- coding: utf-8 -*-
# Copyright (c) cmdop.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    # The options every cmdop.fleet module shares to reach the CMDOP API.
    DOCUMENTATION = r"""
options:
  mode:
    description:
      - The CMDOP server the fleets come from, as C(cmdop) (V(prod)) or C(cmdop --dev) (V(dev)) uses it.
      - Selects the default O(api_url) and O(token_file).
    type: str
    choices: [prod, dev]
    default: prod
  api_url:
    description:
      - Base URL of the CMDOP API. Defaults to V(https://api.cmdop.com) for O(mode=prod) and V(https://dev.cmdop.com) for O(mode=dev).
      - Set it for a self-hosted or test server that stands in for the mode's server.
      - Credentials are only sent over HTTPS; plain V(http://) is accepted for V(localhost) and loopback addresses only.
      - A URL with user info (V(https://user:password@host)) is refused, with a message that does not show it; give the credential
        as O(token) or O(token_file).
      - If not set, the environment variable E(CMDOP_API_URL) is used, then E(CMDOP_API_BASE_URL) (the one CMDOP's SDKs read);
        when both are set, E(CMDOP_API_URL) wins.
    type: str
  token:
    description:
      - An OAuth access token, given directly (for example from a vault). It is not refreshed.
      - If not set, the environment variable E(CMDOP_TOKEN) is used, and then O(token_file).
    type: str
  token_file:
    description:
      - The OAuth token file written by C(cmdop login), on the target host.
      - Defaults to C(~/.cmdop/token_prod.json) or C(~/.cmdop/token_dev.json) according to O(mode). When the default file
        does not exist, the host has no OAuth credential; a O(token_file) given explicitly must exist, or the task fails.
      - When its access token has expired, or the server refuses it, and it holds a refresh token, the token is refreshed
        and the new token pair written back to this file atomically with mode C(0600), even in check mode
        (CMDOP's refresh tokens rotate, so the old one stops working). Every other field of the file is kept;
        C(expires_at) is written as an RFC 3339 UTC time (C(2026-11-23T10:00:00Z)), and read as that or as Unix seconds.
        An answer without C(expires_in) has no known expiry, so the token is then used until the server refuses it.
      - Refreshes are serialised across processes with a lock (C(.token_<mode>.json.lock) beside the file); the file is
        read again under the lock, and a token another run refreshed meanwhile is used instead of refreshing it twice.
      - A symlinked token file is rewritten where the link points; the link stays.
    type: path
  validate_certs:
    description:
      - Whether to check the server's TLS certificate.
      - For a server whose certificate a private CA signed, keep this V(true) and give the CA bundle in the environment variable
        E(REQUESTS_CA_BUNDLE) on the target (the task's C(environment)).
    type: bool
    default: true
  timeout:
    description:
      - Seconds to wait for each HTTP response, more than 0 and at most 3600.
    type: float
    default: 30
  retries:
    description:
      - How many times a request is retried on a connection error, a timeout, HTTP 429 or 5xx, with exponential back-off.
      - C(Retry-After) is honoured, up to 60 seconds a wait.
      - From 0 to 100.
    type: int
    default: 4
requirements:
  - requests >= 2.25
  - urllib3 >= 1.26
  - requests-oauthlib >= 1.3
  - jsonschema >= 3.2
"""
