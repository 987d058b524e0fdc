"""Break each guarantee on purpose and check that the test named for it fails.

    .venv/bin/python scripts/mutations.py OUT.json [--only NAME] [--jobs N]

For every mutation below: copy the checkout (tracked and untracked files, not venvs or build output) to a
temporary folder, replace one exact piece of code there, and run the named pytest test in the copy with the
given interpreter (a venv of scripts/bootstrap.sh). The mutation is *caught* (outcome "held") when pytest exits
1: the test ran and failed. Any other exit (it passed, or could not run) is "BROKEN", as is a mutation whose
code is no longer found: this list must follow the code. scripts/test.sh runs it and
scripts/reliability_table.py puts the outcomes in docs/reliability.md. Exit status 1 when one is not caught.

Each mutation is an independent copy, and the e2e harness gives each pytest run its own target users and sshd,
so --jobs of them (default: the number of CPUs) run at once; the results keep the order of MUTATIONS.
To add one: append a Mutation to MUTATIONS.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import typing as t
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NEWEST, OLDEST = ".venv", ".venvs/ansible-core-2.16"


class Mutation(t.NamedTuple):
    name: str
    broken: str  # the guarantee, as docs/reliability.md says it
    file: str
    old: str
    new: str
    test: str
    venv: str = NEWEST


MUTATIONS = [
    Mutation("lock", "the lock on the fleet file (no flock taken)", "plugins/module_utils/_files.py",
             "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)", "pass",
             "tests/e2e/test_sync.py::test_a_concurrent_writer_holding_the_lock_is_waited_for"),
    Mutation("identity-check", "the check, before the rename, that the file is still the one read", "plugins/module_utils/_files.py",
             "if replaces is not _ANY_FILE and identity(place) != replaces:", "if False:",
             "tests/e2e/reliability/test_concurrency.py::test_a_file_replaced_between_read_and_rename_is_read_again"),
    Mutation("temporary-file-cleanup", "removing the temporary file after a failed write", "plugins/module_utils/_files.py",
             "        with contextlib.suppress(OSError):\n            os.unlink(name, dir_fd=place.fd)\n        raise", "        raise",
             "tests/e2e/test_sync.py::test_a_full_disk_leaves_the_file_as_it_was"),
    Mutation("scrub", "the scrub of secrets from server texts", "plugins/module_utils/_api.py",
             "text = text.replace(secret, SCRUBBED)", "text = text",
             "tests/e2e/test_sync.py::test_a_hostile_server_cannot_echo_a_secret_into_the_message"),
    Mutation("file-secrets-scrubbed", "scrubbing the fleet file's API keys from server texts", "plugins/modules/sync.py",
             "    credential.hidden = hidden\n", "",
             "tests/e2e/test_sync.py::test_a_server_echoing_an_api_key_of_the_fleet_file_never_shows_it"),
    Mutation("unsafe", "marking API text unsafe in the inventory (ansible-core 2.16, before data tagging)", "plugins/inventory/cmdop.py",
             'return wrap_var(value) if "{" in value else value', "return value",
             "tests/e2e/reliability/test_api_values.py::test_api_values_stay_text_in_the_inventory", OLDEST),
    Mutation("schema", "the schema check of every server answer", "plugins/module_utils/_schemas.py",
             "error = jsonschema.exceptions.best_match(_validator(jsonschema, schema).iter_errors(instance))", "error = None",
             "tests/e2e/reliability/test_server_faults.py::test_a_server_fault[wrong-shape]"),
    Mutation("fleet-ids", "fleet ids must be UUIDs", "plugins/module_utils/_schemas.py",
             '            "id": _FLEET_ID,', '            "id": _ID,',
             "tests/e2e/reliability/test_server_faults.py::test_a_server_fault[not-uuid]"),
    Mutation("depth", "the nesting limit of the fleet file", "plugins/module_utils/_json.py",
             "MAX_DEPTH = 64", "MAX_DEPTH = 100000", "tests/e2e/reliability/test_hostile_files.py::test_a_hostile_file_is_refused_and_left_as_it_was[deep-65]"),
    Mutation("repeated-keys", "refusing a key twice in one object", "plugins/module_utils/_json.py",
             "value = json.loads(text, object_pairs_hook=_unique_keys)", "value = json.loads(text)",
             "tests/e2e/reliability/test_hostile_files.py::test_a_hostile_file_is_refused_and_left_as_it_was[duplicate-key]"),
    Mutation("api-key-only", "never touching API-key-only fleets (entries without remote_id)", "plugins/module_utils/_reconcile.py",
             "            continue  # API-key-only fleet: local by design", "            pass",
             "tests/e2e/reliability/test_hostile_documents.py::test_every_rule_holds_for_generated_documents"),
    Mutation("retry-after", "ignoring a Retry-After that is not a number", "plugins/module_utils/_client.py",
             "        except InvalidHeader:\n            return None", "        except ZeroDivisionError:\n            return None",
             "tests/e2e/reliability/test_server_faults.py::test_a_server_fault[429-non-numeric]"),
    Mutation("retry-after-budget", "one budget of 60 s for all the Retry-After waits of a request", "plugins/module_utils/_client.py",
             "RETRY_AFTER_BUDGET = 60.0", "RETRY_AFTER_BUDGET = 1e9", "tests/e2e/test_contract.py::test_a_huge_retry_after_is_capped"),
    Mutation("redirects", "never following a redirect", "plugins/module_utils/_client.py",
             "allow_redirects=False,", "allow_redirects=True,", "tests/e2e/reliability/test_secrets.py::test_a_redirect_never_carries_a_credential[302]"),
    Mutation("page-bounds", "machine pages checked against their count", "plugins/module_utils/_client.py",
             "        if pages != max(1, -(-count // size)) and not (count == 0 and pages == 0):", "        if False:",
             "tests/e2e/reliability/test_server_faults.py::test_a_server_fault[pages-forever]"),
    Mutation("events-state-after-queue", "fleet_events saves its state only after the poll's events are on the queue",
             "extensions/eda/plugins/event_source/fleet_events.py",
             "        for event in events:\n            if event[\"cmdop\"][\"type\"] in wanted:\n                await queue.put(event)\n"
             "        try:\n            await asyncio.to_thread(save_state, path, state)  # only once the events are on the queue",
             "        try:\n            await asyncio.to_thread(save_state, path, state)\n            for event in events:\n"
             "                if event[\"cmdop\"][\"type\"] in wanted:\n                    await queue.put(event)",
             "tests/e2e/test_events_source.py::test_the_state_is_saved_only_after_the_queue_took_the_events"),
    Mutation("events-partial-poll", "no machine_left for a fleet that a poll could not read completely", "plugins/module_utils/_events.py",
             '        if any(key in incomplete for key in old["fleets"]):', "        if False:",
             "tests/e2e/test_events_source.py::test_a_fleet_that_cannot_be_read_makes_nothing_leave"),
    Mutation("events-settle", "machine_online/machine_offline only after settle polls in a row", "plugins/module_utils/_events.py",
             "            if polls >= settle:", "            if polls >= 1:",
             "tests/unit/plugins/module_utils/test_events.py::test_online_changes_only_after_settle_polls"),
    Mutation("host-not-a-group", "no host takes a group's name or a reserved one (all, localhost...)", "plugins/module_utils/_inventory.py",
             "    unavailable = RESERVED_NAMES | frozenset(groups)\n", "    unavailable = frozenset()\n",
             "tests/unit/plugins/module_utils/test_inventory_policy.py::test_hosts_and_groups_never_share_a_name_and_no_host_takes_a_reserved_one"),
    Mutation("group-not-a-host", "no group from keyed_groups or groups takes a host's name or the controller's", "plugins/module_utils/_inventory.py",
             '    if name in hosts:\n        return "a host has that name"\n', "",
             "tests/unit/plugins/module_utils/test_inventory_policy.py::test_hosts_and_groups_never_share_a_name_and_no_host_takes_a_reserved_one"),
    Mutation("names-matched-whole", "host names matched whole (no final newline)", "plugins/module_utils/_inventory.py",
             '_USABLE_NAME = re.compile(r"\\w[\\w.@-]{0,254}\\Z")', '_USABLE_NAME = re.compile(r"^\\w[\\w.@-]{0,254}$")',
             "tests/unit/plugins/module_utils/test_inventory_policy.py::test_hosts_and_groups_never_share_a_name_and_no_host_takes_a_reserved_one"),
    Mutation("host-of-another-source", "no machine takes the name of another machine's host made by an earlier source",
             "plugins/module_utils/_inventory.py",
             "        return name not in unavailable and others.get(name, machine_id) == machine_id\n", "        return name not in unavailable\n",
             "tests/e2e/reliability/test_names.py::test_a_machine_never_takes_over_a_host_or_group_of_an_earlier_source"),
    Mutation("fleet-ids-without-case", "fleet ids compared without case (sync and inventory)", "plugins/module_utils/_reconcile.py",
             'return fleet_id.lower() if isinstance(fleet_id, str) else ""', 'return fleet_id if isinstance(fleet_id, str) else ""',
             "tests/e2e/reliability/test_edges.py::test_local_names_keep_their_letters_and_fleet_ids_match_without_case"),
    Mutation("local-names-keep-letters", "new local names keep their letters (accents taken off)", "plugins/module_utils/_reconcile.py",
             '    text = unicodedata.normalize("NFKD", text.strip().casefold().translate(_LATIN))\n', "    text = text.strip().casefold()\n",
             "tests/unit/plugins/module_utils/test_reconcile.py::test_hostile_names_become_safe_typeable_names"),
    Mutation("no-user-info-in-api-url", "refusing user info in api_url (never shown)", "plugins/module_utils/_api.py",
             '    if "@" in api_url:\n        raise CmdopError(', '    if False:\n        raise CmdopError(',
             "tests/e2e/reliability/test_edges.py::test_the_modules_check_every_number_and_refuse_user_info_in_the_url"),
    Mutation("foreign-link", "a root run never follows a user's link to what the link's owner does not own", "plugins/module_utils/_files.py",
             "if link.st_uid in (0, os.geteuid()) or link.st_uid == owner:", "if True:",
             "tests/e2e/reliability/test_root_runs.py::test_root_never_follows_a_users_link_to_what_is_not_theirs[file]"),
    Mutation("chmod-by-path", "owner and mode set on the open temporary file, nothing done by path after the rename", "plugins/module_utils/_files.py",
             "            with contextlib.suppress(OSError):\n                os.fsync(place.fd)\n",
             "            os.chmod(place.real, new_mode)\n            with contextlib.suppress(OSError):\n                os.fsync(place.fd)\n",
             "tests/e2e/reliability/test_root_runs.py::test_no_chmod_or_chown_by_path_after_the_rename"),
    Mutation("fifo", "only regular files are read (a FIFO or device is refused before reading)", "plugins/module_utils/_files.py",
             "    if not stat.S_ISREG(status.st_mode):", "    if False:",
             "tests/e2e/reliability/test_root_runs.py::test_a_fifo_is_refused_at_once[False]"),
    Mutation("in-place-reserve", "unsafe_writes reserves the new size before writing in place (never truncates on a full disk)",
             "plugins/module_utils/_files.py",
             "            os.posix_fallocate(fd, 0, max(len(data), 1))  # the space is reserved, or nothing is changed", "            pass",
             "tests/e2e/reliability/test_root_runs.py::test_unsafe_writes_on_a_full_disk_never_truncates"),
    Mutation("relay-host", "the CLI's relay host grpc.cmdop.com counts as prod's", "plugins/module_utils/_modes.py",
             '"prod": ("api.cmdop.com", "grpc.cmdop.com"),', '"prod": ("api.cmdop.com",),',
             "tests/e2e/test_cmdop_client.py::test_a_left_fleet_written_as_a_grpc_address_is_marked_inactive"),
    Mutation("mode-by-host", "an entry's mode decided by the host its server names, not by its text", "plugins/module_utils/_modes.py",
             'return host.rstrip(".") or text.lower()', "return text.lower()",
             "tests/unit/plugins/module_utils/test_modes.py::test_every_spelling_of_a_known_host_gives_its_mode"),
    Mutation("dev-server-no-scheme", "a new dev entry's server is dev_server (a host:port), never a URL", "plugins/module_utils/_modes.py",
             'return "" if mode == "prod" else dev_server', 'return "" if mode == "prod" else MODE_URLS[mode]',
             "tests/e2e/test_cmdop_client.py::test_a_new_dev_entry_has_no_scheme"),
    Mutation("dev-server-kept", "an older dev entry's server is rewritten only when the user asks", "plugins/module_utils/_reconcile.py",
             'rewrite = rewrite_dev_server and mode == "dev"', 'rewrite = mode == "dev"',
             "tests/e2e/test_cmdop_client.py::test_an_older_dev_entry_stays_devs_and_is_rewritten_only_on_request"),
    Mutation("daemon-reread", "after a refused refresh, the token file read again for a pair the daemon rotated", "plugins/module_utils/_token.py",
             '                rotated = self._rotated_since(place, current["access_token"])', "                rotated = None",
             "tests/e2e/test_cmdop_client.py::test_a_token_the_daemon_rotated_meanwhile_is_used"),
    Mutation("daemon-reread-changed", "only a changed access token replaces a refused refresh", "plugins/module_utils/_token.py",
             'if token is None or token["access_token"] == access_token:', "if token is None:",
             "tests/e2e/test_cmdop_client.py::test_a_refused_refresh_with_an_unchanged_file_says_log_in_again"),
    Mutation("refresh-leeway", "the refresh leeway (30 s) well below the daemon's 5 minutes", "plugins/module_utils/_token.py",
             "EXPIRY_LEEWAY = 30.0", "EXPIRY_LEEWAY = 300.0",
             "tests/e2e/test_cmdop_client.py::test_a_token_the_daemon_is_about_to_refresh_is_left_to_it"),
    Mutation("readable-file-warning", "a warning for a fleet file holding API keys that others may read", "plugins/modules/sync.py",
             "    if mode & 0o077:\n        module.warn(", "    if False:\n        module.warn(",
             "tests/e2e/test_cmdop_client.py::test_a_readable_file_holding_api_keys_is_warned_about_and_kept"),
    Mutation("private-backup", "a backup of a file holding API keys never more readable than 0600", "plugins/module_utils/_files.py",
             "    mode = stat.S_IMODE(old.st_mode) & (0o600 if private else 0o7777)\n", "    mode = stat.S_IMODE(old.st_mode)\n",
             "tests/e2e/test_cmdop_client.py::test_a_readable_file_holding_api_keys_is_warned_about_and_kept"),
    Mutation("opaque-remote-id", "a remote_id already in the file is an opaque string (only server ids are UUIDs)", "plugins/module_utils/_schemas.py",
             '"remote_id": {"type": ["string", "null"]},', '"remote_id": {"type": ["string", "null"], "pattern": "^[0-9a-f-]{36}$"},',
             "tests/e2e/test_cmdop_client.py::test_keys_of_any_prefix_and_opaque_ids_work_through_inventory_and_sync"),
    Mutation("no-key-prefix", "no API key judged by its prefix", "plugins/module_utils/_inventory.py",
             '        if entry.get("api_key"):', '        if entry.get("api_key", "").startswith("cmdop_"):',
             "tests/e2e/test_cmdop_client.py::test_keys_of_any_prefix_and_opaque_ids_work_through_inventory_and_sync"),
]


def copy_checkout(target: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT, check=True,
                           capture_output=True).stdout.split(b"\0")
    for name in filter(None, files):
        source = ROOT / name.decode()
        if source.is_file():
            (target / name.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name.decode(), follow_symlinks=False)


def run(mutation: Mutation, workdir: Path) -> t.Tuple[str, str]:
    copy = workdir / mutation.name
    copy_checkout(copy)
    path = copy / mutation.file
    code = path.read_text(encoding="utf-8")
    if code.count(mutation.old) != 1:
        return "BROKEN", "the code to break is not found once in %s: update scripts/mutations.py" % mutation.file
    path.write_text(code.replace(mutation.old, mutation.new), encoding="utf-8")
    python = ROOT / mutation.venv / "bin" / "python"
    # hypothesis's profile "mutations" (tests/conftest.py): the examples of "ci", a failing one not shrunk
    ran = subprocess.run([str(python), "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", mutation.test], cwd=copy,
                         capture_output=True, text=True, check=False, env=dict(os.environ, HYPOTHESIS_PROFILE="mutations"))
    last = (ran.stdout.strip().splitlines() or [""])[-1]
    return ("held" if ran.returncode == 1 else "BROKEN"), "pytest exit %d: %s" % (ran.returncode, last)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--only", action="append", help="run only these mutations (by name)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="mutations run at once (default: the CPUs)")
    args = parser.parse_args()
    chosen = [mutation for mutation in MUTATIONS if not args.only or mutation.name in args.only]
    names = [mutation.name for mutation in MUTATIONS]
    doubles = sorted({name for name in names if names.count(name) > 1})
    if doubles:
        print("mutation names must be unique (each has its own copy): %s" % ", ".join(doubles), file=sys.stderr)
        return 2
    results = []
    with tempfile.TemporaryDirectory(prefix="cmdop-mutations-") as folder:
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            futures = [pool.submit(run, mutation, Path(folder)) for mutation in chosen]
            for mutation, future in zip(chosen, futures):
                outcome, said = future.result()
                print("%-7s %-22s %s  (%s)" % (outcome, mutation.name, mutation.test, said), flush=True)
                results.append({"name": mutation.name, "broken": mutation.broken, "file": mutation.file, "test": mutation.test, "outcome": outcome})
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return 0 if all(item["outcome"] == "held" for item in results) else 1


if __name__ == "__main__":
    sys.exit(main())
