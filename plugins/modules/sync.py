#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) cmdop.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r"""
module: sync
short_description: Sync the user's CMDOP fleets into ~/.cmdop/ssh_workspaces.json, headless and idempotent
version_added: 0.1.0
description:
  - Does on the target host what C(cmdop login) does to C(~/.cmdop/ssh_workspaces.json), without a browser;
    it fetches the user's fleets with OAuth (or takes them from O(fleets)), adds new fleets, updates known ones,
    marks fleets the user has left as inactive, and writes the file atomically, only when it changed.
  - "Reconciliation rules: an entry is matched to a server fleet by C(remote_id), without case (UUIDs). A matched entry takes the server's
    name as C(remote_name) and loses C(inactive) if it had it (reactivated). An entry of this O(mode) whose fleet the
    server no longer lists gets C(\"inactive\": true); its API key stays. A server fleet no entry knows is added with
    an empty C(api_key) under a new local name (the server's slug or name with accents taken off, C(equipe-paris) for
    C(Équipe Paris); C(fleet-) and 8 characters of its id when neither holds a Latin letter). Local names are never renamed."
  - "Never touched: API-key-only entries (no C(remote_id)), C(api_key) values, the C(active) pointer, C(server) values
    (unless O(rewrite_dev_server) asks), entries of the other mode, and keys this module does not know (at the top level
    and in entries)."
  - "Which entries belong to a mode is decided by the host C(server) names, in any form (a URL with or without a scheme or
    path, a gRPC C(host:port)): an empty or absent C(server), C(api.cmdop.com) and C(grpc.cmdop.com) are prod's;
    C(dev.cmdop.com), C(api-dev.cmdop.com) and the host of O(dev_server) are dev's. Any other C(server) is a local override:
    it is updated (and reactivated) when the server lists its C(remote_id), and never deactivated. O(api_url) does not change
    which entries are in scope."
  - "A new fleet's local name is the server's C(slug) (or its name) in lower case with every run of characters other than
    letters, digits, C(.), C(_) and C(-) turned into C(-), at most 63 characters. If a local entry already has that name,
    C(-) and the first 8 characters of the fleet's id are appended (V(team-a-7f0c8f5e)), then C(-2), C(-3)... if needed.
    Local names are never renamed afterwards: users type them."
  - The module holds a lock (C(.ssh_workspaces.json.lock) beside the file, created with the file's owner and mode C(0600))
    while it reads, reconciles and writes, so two runs at once on one host cannot lose an update.
  - A symlinked O(path) (dotfiles kept by stow or chezmoi) is edited where the link points, as M(ansible.builtin.blockinfile)
    does; the link stays a link, and the lock and temporary file are beside the real file.
  - The path (and the token file's) is resolved one component at a time from open folders. A symlink is followed only when
    the run's user or root owns it, or when its owner also owns what it points to (the kernel's C(protected_symlinks) rule);
    so a run as root never follows a user's link to root's files or folders. When the run's user does not own the file's
    folder (root in a user's home), a file there that is not the folder owner's is refused; nothing is locked, created or
    changed beside it.
  - The file is replaced atomically; its owner, group and mode are set on the new file before it is renamed into place,
    never by path afterwards. O(unsafe_writes=true) lets it be written in place where an atomic rename is impossible
    (a file bind-mounted into a container), after reserving its new size and taking a backup.
  - Only a regular file of at most 128 MiB is read; a FIFO, a device, a socket or a folder is refused before it is read.
    A fleet file with more than one hard link gets a warning (the rename separates it from its other names).
  - "Errors leave the file byte-for-byte as it was: an expired token that cannot be refreshed (V(sync: unauthorized)),
    an API key where OAuth is needed, a corrupt or schema-invalid fleet file, a server answer of the wrong shape,
    429 and 5xx after retries, timeouts, a full disk, an O(owner), O(group) or O(file_mode) that cannot be applied
    (checked before anything is written, in check mode too). The one exception says so: with O(unsafe_writes), a write
    in place that fails midway after its space was reserved (the message names the backup)."
  - No secret (access token, refresh token, API key) appears in the result, the diff, a warning or C(-vvvv) output.
author:
  - cmdop.fleet maintainers (@cmdop)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - cmdop.fleet.attributes.actiongroup_fleet
  - cmdop.fleet.api
  - ansible.builtin.files
attributes:
  check_mode:
    support: full
    details:
      - Computes the whole result and the diff and creates or changes nothing (no folder, no file, no lock file), except
        a refreshed OAuth token (the token file, and the lock beside it), which must be saved or the rotated refresh
        token would be lost.
  diff_mode:
    support: full
    details:
      - The before and after text of the fleet file, every API key replaced by C(********).
  platform:
    support: full
    platforms: posix
options:
  path:
    description:
      - The fleet file on the target host. A missing file is created with mode C(0600), and a missing folder with mode C(0700);
        when root creates them, they belong to the owner of the folder they are made in (the home's owner), unless
        O(owner) or O(group) say otherwise.
    type: path
    default: ~/.cmdop/ssh_workspaces.json
  fleets:
    description:
      - The user's fleets as C(GET /api/workspaces/workspaces/) returns them, fetched elsewhere, for example once on the
        controller with M(cmdop.fleet.fleet_info). Each needs at least C(id) and C(name); C(slug) names new entries.
      - When given, the module makes no HTTP call, so one API call can serve a thousand hosts that share an account.
    type: list
    elements: dict
  last_synced:
    description:
      - When C(last_synced_at) moves. It is always set on entries that changed (added, updated, deactivated, reactivated).
      - V(max_age) also stamps every entry the server listed whose C(last_synced_at) is missing or older than
        O(last_synced_max_age), or ahead of the host's clock by more than five minutes. A healthy host's file then
        changes at most once per O(last_synced_max_age), and a C(last_synced_at) older than O(last_synced_max_age) plus
        the time between two syncs means syncs are failing on that host (CMDOP's troubleshooting reads it so).
      - V(changed) moves it only on entries that changed, so a healthy host's stamps grow old.
      - V(always) stamps every entry the server listed, so the file changes on every run.
    type: str
    choices: [max_age, changed, always]
    default: max_age
    version_added: 0.2.0
  last_synced_max_age:
    description:
      - With O(last_synced=max_age), the age in seconds past which a listed entry's C(last_synced_at) is renewed.
      - The default is one day.
    type: int
    default: 86400
    version_added: 0.2.0
  require_oauth:
    description:
      - What to do when the host has no OAuth credential at all (no O(token), no E(CMDOP_TOKEN), no O(token_file)),
        as on an API-key-only host.
      - V(false) reports the host as skipped, with the reason. V(true) fails.
    type: bool
    default: false
  backup:
    description:
      - Keep a timestamped copy of the fleet file before changing it. Its path is returned as RV(backup_file).
    type: bool
    default: false
  lock_timeout:
    description:
      - Seconds to wait for another run that holds the file's lock, from 0 to 86400.
    type: float
    default: 30
  file_mode:
    description:
      - The permissions of the fleet file, as O(ansible.builtin.file#module:mode) takes them.
      - This module's O(mode) is the CMDOP mode, so the file's permissions go here.
      - "By default a new file gets V(0600) and an existing file keeps its permissions (ansible-core's own rule). CMDOP
        documents the file as C(0600): an existing file that holds API keys and that group or others may read gets a
        warning naming its mode, and is changed only when this option says so (V('0600'))."
      - A backup (O(backup=true)) of a file that holds API keys is never more readable than C(0600).
      - Checked (octal or symbolic) before anything is written, in check mode too.
    type: raw
  dev_server:
    description:
      - The C(server) value of an entry this module adds in O(mode=dev) (prod entries get an empty C(server), as C(cmdop) writes them).
      - CMDOP has not published what its CLI writes there. The field is a gRPC address the CLI may dial, so this is a
        C(host:port), never a URL with a scheme; if your CLI writes another value for dev entries, give it here. Its host
        also counts as dev's when entries are matched to a mode.
    type: str
    default: dev.cmdop.com:443
    version_added: 0.2.0
  rewrite_dev_server:
    description:
      - With O(mode=dev), set the C(server) of dev entries that hold a URL with a scheme (V(https://dev.cmdop.com), what
        release 0.1.0 wrote) to O(dev_server); they are reported in RV(updated) with the field C(server).
      - By default such entries keep their C(server), which is local config; they still count as dev's.
    type: bool
    default: false
    version_added: 0.2.0
  mode:
    description:
      - The CMDOP server the fleets come from, as C(cmdop) (V(prod)) or C(cmdop --dev) (V(dev)) uses it.
      - Selects the default O(api_url) and O(token_file), and which entries of the file this sync may change (see above).
      - Not the file's permissions, which are O(file_mode).
notes:
  - The target needs Python with C(requests), C(requests-oauthlib) and C(jsonschema) (on Debian and Ubuntu,
    C(python3-requests python3-requests-oauthlib python3-jsonschema)). The role C(cmdop.fleet.fleet_sync) installs them.
  - This module is in the action group C(cmdop.fleet.fleet), so C(module_defaults) can set O(api_url) and O(mode) once.
seealso:
  - module: cmdop.fleet.fleet_info
  - plugin: cmdop.fleet.cmdop
    plugin_type: inventory
"""

EXAMPLES = r"""
- name: Sync the remote user's fleets with the token cmdop login left on the host
  cmdop.fleet.sync:

- name: Sync the dev server's fleets, keeping a backup
  cmdop.fleet.sync:
    mode: dev
    backup: true

- name: One API call on the controller, then sync a thousand hosts without calling the API
  hosts: cmdop_hosts
  tasks:
    - name: List the fleets once
      cmdop.fleet.fleet_info:
        token: "{{ vault_cmdop_token }}"
      delegate_to: localhost
      run_once: true
      register: account

    - name: Sync every host's file from that list
      cmdop.fleet.sync:
        fleets: "{{ account.fleets }}"

- name: Set the server once for every cmdop.fleet module
  hosts: all
  module_defaults:
    group/cmdop.fleet.fleet:
      api_url: https://cmdop.internal.example.com
  tasks:
    - name: Sync
      cmdop.fleet.sync:
        token: "{{ vault_cmdop_token }}"
"""

RETURN = r"""
added:
  description: Fleets added to the file, by local name and remote id.
  returned: success
  type: list
  elements: dict
  sample: [{"name": "staging", "remote_id": "2b7e6a4c-1d1f-4c51-9b55-2f0a8a2b9c10"}]
updated:
  description: Known fleets whose entry changed, with the names of the changed C(fields).
  returned: success
  type: list
  elements: dict
  sample: [{"name": "team-a", "remote_id": "7f0c8f5e-0c7a-4a3e-8d7e-8b1a4c2d9e01", "fields": ["remote_name"]}]
deactivated:
  description: Fleets the user has left, now marked C(inactive).
  returned: success
  type: list
  elements: dict
reactivated:
  description: Inactive fleets the user belongs to again.
  returned: success
  type: list
  elements: dict
unchanged:
  description: Entries in scope that needed no change.
  returned: success
  type: list
  elements: dict
fleets:
  description: The file's entries after the sync, every non-empty C(api_key) replaced by C(********).
  returned: success
  type: list
  elements: dict
  sample: [{"name": "team-a", "api_key": "********", "server": "", "remote_id": "7f0c8f5e-0c7a-4a3e-8d7e-8b1a4c2d9e01",
            "remote_name": "Team A", "last_synced_at": "2026-11-20T10:00:00Z"}]
path:
  description: The fleet file.
  returned: always
  type: str
  sample: /home/alice/.cmdop/ssh_workspaces.json
backup_file:
  description: The backup's path, when O(backup=true) and the file was changed.
  returned: changed and backup made
  type: str
  sample: /home/alice/.cmdop/ssh_workspaces.json.12345.2026-11-23@10:00:00~
token_refreshed:
  description: Whether the OAuth token was refreshed (and written back to O(token_file)) during this run.
  returned: always
  type: bool
mode:
  description: The permissions of the fleet file written (of the file a symlinked O(path) points to, not of the link).
  returned: when the file exists
  type: str
  sample: "0600"
owner:
  description: The owner of the fleet file written (not of a link to it); C(group), C(uid), C(gid) and C(size) are returned too.
  returned: when the file exists
  type: str
  sample: alice
"""

import datetime
import grp
import os
import pwd
import stat
import typing as t

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cmdop.fleet.plugins.module_utils._target_python import require_python

require_python()  # before the module_utils below, which cannot even compile on an older Python

from ansible_collections.cmdop.fleet.plugins.module_utils import _fleet_file
from ansible_collections.cmdop.fleet.plugins.module_utils._api import check_number
from ansible_collections.cmdop.fleet.plugins.module_utils._base import (
    API_ARGUMENT_SPEC,
    check_libraries,
    failing_clearly,
    login_hint,
    make_client,
    resolve_credential,
    token_file,
    unsafe_writes,
)
from ansible_collections.cmdop.fleet.plugins.module_utils._files import (
    Attributes,
    FileChangedError,
    FileError,
    MissingFolderError,
    Place,
    backup,
    final_attributes,
    locked,
    lookup_group,
    lookup_owner,
    read_stat,
    read_text,
    resolve,
    set_attributes,
    write_atomically,
)
from ansible_collections.cmdop.fleet.plugins.module_utils._modes import DEFAULT_DEV_SERVER, DEFAULT_FLEET_FILE, check_dev_server
from ansible_collections.cmdop.fleet.plugins.module_utils._reconcile import DEFAULT_MAX_AGE, LAST_SYNCED_MAX_AGE, LAST_SYNCED_POLICIES, reconcile
from ansible_collections.cmdop.fleet.plugins.module_utils._schemas import validate_server_fleets


REREADS = 10  # how many times a file another writer keeps replacing is read again before the run gives up


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def fetch_fleets(module: AnsibleModule, result: dict, hidden: t.List[str]) -> t.Optional[list]:
    """The server's fleets, from O(fleets) or the API; None when the host has no OAuth credential.
    ``hidden``: more secrets no message from the server may show (the fleet file's API keys)."""
    if module.params["fleets"] is not None:
        return validate_server_fleets(module.params["fleets"], "the fleets option")
    credential = resolve_credential(module)
    if credential is None:
        return None
    credential.hidden = hidden
    try:
        return make_client(module).list_fleets(credential)
    finally:
        result["token_refreshed"] = credential.refreshed


def file_secrets(path: str) -> t.List[str]:
    """The fleet file's API keys, read before any HTTP call: a server's error may echo one, and the client scrubs every
    text from the server of them. (They are not handed to Ansible's no_log masking: its cost grows with the number of
    secrets times the size of the result, hours for a file of 100,000 fleets; the module's own output never holds a key:
    ``fleets`` and the diff are redacted.) A file that cannot be read is reported later, under the lock."""
    try:
        return _fleet_file.secrets(_fleet_file.parse(read_text(path), path))
    except (FileError, _fleet_file.FleetFileError):
        return []


def file_mode(module: AnsibleModule, old: t.Optional[os.stat_result]) -> t.Optional[int]:
    """O(file_mode) as permission bits, as ansible-core's file arguments read it (octal or symbolic, against the old file)."""
    value = module.params["file_mode"]
    if value is None:
        return None
    if isinstance(value, int):
        mode = value
    else:
        try:
            mode = int(str(value), 8)
        except ValueError:
            base = old if old is not None else os.stat_result((stat.S_IFREG | 0o600, 0, 0, 0, 0, 0, 0, 0, 0, 0))
            try:
                mode = module._symbolic_mode_to_octal(base, str(value))  # pylint: disable=protected-access
            except Exception as exc:  # pylint: disable=broad-except  # ansible-core raises plain ValueError or others
                raise FileError("file_mode %s must be in octal or symbolic form (%s); nothing was changed" % (value, exc)) from None
    if mode != stat.S_IMODE(mode) or mode < 0:
        raise FileError("file_mode %s: only permission bits are allowed; nothing was changed" % value)
    return mode


def wanted_attributes(module: AnsibleModule, old: t.Optional[os.stat_result]) -> Attributes:
    """O(owner), O(group) and O(file_mode) as numbers, looked up and checked before anything is made or written (in check
    mode too, so that it fails where a real run would)."""
    return Attributes(lookup_owner(module.params["owner"]), lookup_group(module.params["group"]), file_mode(module, old))


def path_info(status: os.stat_result) -> dict:
    """The result's description of the file written (never of a link to it): uid, gid, owner, group, mode, size."""
    try:
        owner = pwd.getpwuid(status.st_uid).pw_name
    except KeyError:
        owner = str(status.st_uid)
    try:
        group = grp.getgrgid(status.st_gid).gr_name
    except KeyError:
        group = str(status.st_gid)
    return {"uid": status.st_uid, "gid": status.st_gid, "owner": owner, "group": group, "mode": "0%03o" % stat.S_IMODE(status.st_mode),
            "state": "file", "size": status.st_size}


def other_attributes(module: AnsibleModule, place: Place, changed: bool) -> bool:
    """SELinux context and O(attributes), set through the open folder (the helpers take a path; the file's name is
    never followed: lsetfilecon and chattr refuse a symlink)."""
    params = dict(module.params, mode=None, owner=None, group=None)
    arguments = module.load_file_common_arguments(params, path=place.real)
    return module.set_fs_attributes_if_different(dict(arguments, path=place.entry()), changed)


def write(module: AnsibleModule, place: Place, result: dict, fleets: list,
          dev_server: str) -> t.Tuple[t.Any, dict, t.Optional[str], bool, t.Optional[os.stat_result]]:
    """Read, reconcile and write the file under its lock: (the outcome, the document read, its text, changed, the file's status after)."""
    for _attempt in range(REREADS):
        before_text, old = read_stat(place)
        seen = None if old is None else (old.st_dev, old.st_ino, old.st_size, old.st_mtime_ns)
        document = _fleet_file.parse(before_text, place.path)
        outcome = reconciled(module, document, fleets, dev_server)
        wanted = wanted_attributes(module, old)
        uid, gid, mode = final_attributes(place, wanted, old)
        content_changed = outcome.changed or before_text is None
        changed = content_changed or (old.st_uid, old.st_gid, stat.S_IMODE(old.st_mode)) != (uid, gid, mode)
        if old is not None and old.st_nlink > 1 and content_changed:
            module.warn("%s has %d hard links: the sync replaces it with a new file, so its other names keep the old content"
                        % (place.real, old.st_nlink))
        if not changed or module.check_mode:
            return outcome, document, before_text, changed, old
        try:
            # Our lock keeps this collection's runs apart; a writer that does not know it (cmdop login) may still
            # replace the file meanwhile: then its change is read and reconciled again, never overwritten.
            if not content_changed:
                set_attributes(place, wanted, seen)
                return outcome, document, before_text, changed, place.lstat()
            if module.params["backup"] and old is not None and before_text is not None:
                result["backup_file"] = backup(place, before_text.encode("utf-8"), old, private=bool(_fleet_file.secrets(document)))
            written = write_atomically(place, _fleet_file.serialize(outcome.document).encode("utf-8"), mode=None, replaces=seen,
                                       wanted=wanted, unsafe_writes=unsafe_writes(module))
            return outcome, document, before_text, changed, written
        except FileChangedError:
            continue
    raise FileError("%s was replaced by another writer each of the %d times this run read it; nothing was written" % (place.path, REREADS))


def warn_if_readable(module: AnsibleModule, path: str, status: t.Optional[os.stat_result], document: dict) -> None:
    """Warn when the file holds API keys and group or others may read it, unless file_mode says what its mode is to be."""
    if module.params["file_mode"] is not None or status is None or not _fleet_file.secrets(document):
        return
    mode = stat.S_IMODE(status.st_mode)
    if mode & 0o077:
        module.warn("%s holds API keys and group or others may read it (mode %04o); CMDOP documents mode 0600. Nothing was "
                    "changed: set file_mode: '0600' (role: fleet_sync_file_mode) to narrow it" % (path, mode))


def reconciled(module: AnsibleModule, document: dict, fleets: list, dev_server: str) -> t.Any:
    """The reconciliation of the document read with the server's fleets, as the module's options ask."""
    return reconcile(document, fleets, module.params["mode"], utc_now(), module.params["last_synced"], module.params["last_synced_max_age"],
                     dev_server=dev_server, rewrite_dev_server=module.params["rewrite_dev_server"])


def sync(module: AnsibleModule, result: dict) -> None:
    path = module.params["path"]
    if module.params["last_synced_max_age"] < 0:
        module.fail_json(msg="sync: last_synced_max_age must be 0 or more seconds", **result)
    check_number("lock_timeout", module.params["lock_timeout"], 0, 86400)
    wanted = wanted_attributes(module, None)  # a bad owner, group or mode fails before anything else
    try:
        dev_server = check_dev_server(module.params["dev_server"])
    except ValueError as exc:
        module.fail_json(msg="sync: %s" % exc, **result)
    fleets = fetch_fleets(module, result, file_secrets(path))
    if fleets is None:
        reason = "no OAuth credential on this host (no token, CMDOP_TOKEN or token file %s): fleet enumeration requires OAuth" % token_file(module)
        if module.params["require_oauth"]:
            module.fail_json(msg="sync: %s; %s" % (reason, login_hint(module.params["mode"])), **result)
        module.exit_json(skipped=True, msg="skipped: %s (an API-key-only host)" % reason, **result)

    check_mode = module.check_mode
    try:
        # a symlinked file is edited where it really is (the link stays), unless a root run would follow a user's link out
        place = resolve(path, create=not check_mode, owner=(wanted.uid, wanted.gid))
    except MissingFolderError:
        if not check_mode:
            raise
        place = None  # check mode: no folder, so no file; nothing is made
    if place is None:
        document = _fleet_file.parse(None, path)
        outcome = reconciled(module, document, fleets, dev_server)
        before_text, changed, status = None, True, None
    else:
        with place:
            try:
                with locked(place, module.params["lock_timeout"], create=not check_mode):
                    outcome, document, before_text, changed, status = write(module, place, result, fleets, dev_server)
                    if status is not None:
                        changed = other_attributes(module, place, changed)
            except BaseException:
                if not check_mode:
                    place.discard_created()
                raise

    if status is not None:
        warn_if_readable(module, path, status, document)
        result.update(path_info(status))
    result.update(outcome.by_action())
    result["changed"] = changed
    redacted = _fleet_file.redact(outcome.document)
    result["fleets"] = redacted.get("workspaces", [])
    if module._diff:
        result["diff"] = {
            "before_header": path,
            "after_header": path,
            "before": _fleet_file.serialize(_fleet_file.redact(document)) if before_text is not None else "",
            "after": _fleet_file.serialize(redacted),
        }


def main() -> None:
    argument_spec = dict(
        API_ARGUMENT_SPEC,
        path=dict(type="path", default=DEFAULT_FLEET_FILE),
        fleets=dict(type="list", elements="dict"),
        last_synced=dict(type="str", default=LAST_SYNCED_MAX_AGE, choices=list(LAST_SYNCED_POLICIES)),
        last_synced_max_age=dict(type="int", default=DEFAULT_MAX_AGE),
        require_oauth=dict(type="bool", default=False),
        backup=dict(type="bool", default=False),
        lock_timeout=dict(type="float", default=30.0),
        file_mode=dict(type="raw"),
        dev_server=dict(type="str", default=DEFAULT_DEV_SERVER),
        rewrite_dev_server=dict(type="bool", default=False),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True, add_file_common_args=True)
    module.add_path_info = lambda kwargs: kwargs  # the result describes the file written (path_info), not what the path names now
    check_libraries(module, http=module.params["fleets"] is None)
    result = {"changed": False, "path": module.params["path"], "token_refreshed": False}
    with failing_clearly(module, "sync", result):
        sync(module, result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
