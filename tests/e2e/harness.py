"""End-to-end test harness for cmdop.fleet: real parts, no mocks.

* ``collection_layout()``: this checkout as ``<root>/ansible_collections/cmdop/fleet``
  (``scripts/collection-layout.sh``), for ``ANSIBLE_COLLECTIONS_PATH``.
* ``SshTargets``: a private ``/usr/sbin/sshd`` on 127.0.0.1 and real local Unix
  users reached over SSH with a throw-away key as hosts ``t1`` and ``t2``: the users of
  one *slot* (``cmdop-s<N>-t1``, ``cmdop-s<N>-t2``), taken for the whole session, so
  that pytest-xdist workers and separate sessions on one machine run side by side
  (a test names a target user as ``targets.user("t1")``, never by a literal), using
  the system ``/usr/bin/python3`` (Debian's python3-requests etc.) like a real host,
  or, with ``CMDOP_E2E_TARGET_LIBS``, an interpreter with other library versions
  (``target_python()``).
* ``AnsibleRunner``: runs the venv's ``ansible-playbook`` / ``ansible-inventory`` /
  other CLIs with a hermetic environment.
* ``Emulator``: ``tests/emulator/cmdop_emulator.py`` as a subprocess.

How playbook results are captured: ``ansible-playbook`` runs with the *default*
stdout callback, so ``stdout`` is exactly the human output a user sees at the
requested verbosity (use it to check that secrets never appear). This module
is also an opt-in aggregate callback plugin (``CallbackModule`` below; enabled
with ``ANSIBLE_CALLBACK_PLUGINS`` = a directory holding only a symlink to this
file, and ``ANSIBLE_CALLBACKS_ENABLED=harness``) that writes every task result
per host to a JSON file, which ``PlaybookResult`` parses. One run gives both.
(ansible-core 2.19 has no ``ansible.builtin.json`` callback; it is ansible.posix's.)
"""

from __future__ import annotations

import atexit
import dataclasses
import fcntl
import hashlib
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import typing as t
from pathlib import Path

import yaml

from ansible.plugins.callback import CallbackBase
from ansible.vars.clean import strip_internal_keys

DOCUMENTATION = """
name: harness
type: aggregate
short_description: Records task results for the cmdop.fleet end-to-end test harness
description:
  - Writes every task result, per play, task and host, plus the play recap, as JSON
    to the file named by the C(CMDOP_HARNESS_RESULTS) environment variable.
  - Test-only; enabled by tests/e2e/harness.py, never by users.
"""

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = REPO_ROOT / "scripts"
EMULATOR_SCRIPT = REPO_ROOT / "tests" / "emulator" / "cmdop_emulator.py"
DEFAULT_EMULATOR_SEED = REPO_ROOT / "tests" / "emulator" / "seed-demo.json"

# The host aliases of the inventory; each session (each pytest-xdist worker) logs in to them as the users of its slot.
TARGET_ALIASES = ("t1", "t2")
TARGET_REQUIREMENTS = REPO_ROOT / "tests" / "e2e" / "target-requirements"
TARGET_PYTHONS_DIR = Path("/opt/cmdop-fleet-e2e")  # scripts/matrix.sh's TARGET_PYTHONS_DIR
TARGET_LIBS_ENV = "CMDOP_E2E_TARGET_LIBS"
SYSTEM_PYTHON = "/usr/bin/python3"


def target_python(libs: str | None = None) -> str:
    """The targets' interpreter: Debian's /usr/bin/python3 with its packages, or, for libs (default
    $CMDOP_E2E_TARGET_LIBS) = a stem of tests/e2e/target-requirements/<stem>.txt, the virtualenv that
    scripts/bootstrap.sh built from that file (named as scripts/matrix.sh's target_python_dir names it)."""
    libs = os.environ.get(TARGET_LIBS_ENV) if libs is None else libs
    if not libs:
        return SYSTEM_PYTHON
    requirements = TARGET_REQUIREMENTS / ("%s.txt" % libs)
    folder = TARGET_PYTHONS_DIR / ("%s-%s" % (libs, hashlib.sha256(requirements.read_bytes()).hexdigest()[:12]))
    if not (folder / ".bootstrap.done").exists():
        raise RuntimeError("%s=%s: no target interpreter at %s; run scripts/bootstrap.sh" % (TARGET_LIBS_ENV, libs, folder))
    return str(folder / "bin" / "python")


TARGET_PYTHON = target_python()
SSHD = "/usr/sbin/sshd"
# Target slots: the target users are machine-wide, so each session (each pytest-xdist worker, each person's
# make test on one machine) takes one free slot, non-blocking, and holds its lock (SLOT_LOCK % N) from
# SshTargets.start() to stop(); slot N's users are cmdop-s<N>-t1 and cmdop-s<N>-t2 (created on first use and
# kept). When every slot is taken, a session waits for one (up to TARGETS_LOCK_TIMEOUT).
TARGET_SLOTS = int(os.environ.get("CMDOP_E2E_SLOTS") or 16)
SLOT_LOCK = "/tmp/cmdop-fleet-e2e-slot-%d.lock"
# Explicit hosts (SshTargets(hosts=...), e.g. the benchmark's) lock their own set of users, waiting for it.
HOSTS_LOCK = "/tmp/cmdop-fleet-e2e-hosts-%s.lock"
# Held only while creating or changing users (useradd/usermod take /etc/passwd's lock and fail when it is busy).
USERS_LOCK = "/tmp/cmdop-fleet-e2e-users.lock"
TARGETS_LOCK_TIMEOUT = 1800.0
SSH_COMMON_ARGS = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
RESULTS_ENV = "CMDOP_HARNESS_RESULTS"
CALLBACK_NAME = "harness"


def venv_bin() -> Path:
    """Directory holding the ansible CLIs: the running interpreter's (the venv when run via make test)."""
    here = Path(sys.executable).parent
    if (here / "ansible-playbook").exists():
        return here
    return REPO_ROOT / ".venv" / "bin"


def collection_layout() -> Path:
    """Create (idempotently) and return the collections root in which cmdop.fleet is this checkout."""
    out = subprocess.run([str(SCRIPTS / "collection-layout.sh")], check=True, capture_output=True, text=True).stdout
    path = Path(out.strip().splitlines()[-1])
    if (path / "ansible_collections" / "cmdop" / "fleet").resolve() != REPO_ROOT:
        raise RuntimeError("collection layout %s does not point at %s" % (path, REPO_ROOT))
    return path


def slot_hosts(slot: int) -> dict[str, str]:
    """Host alias -> local Unix user, for the target users of one slot: {"t1": "cmdop-s<slot>-t1", ...}."""
    return {alias: "cmdop-s%d-%s" % (slot, alias) for alias in TARGET_ALIASES}


def _try_lock(path: str) -> t.IO[str] | None:
    """An open file holding an exclusive flock on path, or None when another process holds it."""
    handle = open(path, "a", encoding="utf-8")  # pylint: disable=consider-using-with
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


_CONTROL_PATH_DIR: list[str] = []


def control_path_dir() -> str:
    """A short folder for ssh's ControlPersist sockets, one per test process, removed when it exits."""
    if not _CONTROL_PATH_DIR:
        folder = tempfile.mkdtemp(prefix="cmdop-e2e-cp.")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        _CONTROL_PATH_DIR.append(folder)
    return _CONTROL_PATH_DIR[0]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(cmd: list[str], **kwargs: t.Any) -> subprocess.CompletedProcess:
    kwargs.setdefault("check", True)
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    try:
        return subprocess.run(cmd, **kwargs)  # pylint: disable=subprocess-run-check
    except subprocess.CalledProcessError as exc:
        raise RuntimeError("%s failed (rc=%s):\n%s%s" % (" ".join(cmd), exc.returncode, exc.stdout or "", exc.stderr or "")) from exc


def _descendants(pid: int) -> list[int]:
    """All live descendants of pid (from /proc), children before grandchildren."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry, encoding="utf-8", errors="replace") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(0), []):
            found.append(child)
            todo.append(child)
    return found


def _kill_quietly(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _stop_process(proc: subprocess.Popen, timeout: float = 10.0, with_descendants: bool = False) -> None:
    if proc.poll() is not None:
        return
    victims = _descendants(proc.pid) if with_descendants else []
    proc.terminate()
    for pid in victims:
        _kill_quietly(pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)
    for pid in victims:
        _kill_quietly(pid, signal.SIGKILL)


class SshTargets:
    """A private sshd on 127.0.0.1 plus local users that play the managed hosts.

    Needs root (creates users, runs sshd). Users are created idempotently and
    kept between runs; their ~/.cmdop is wiped at start, and their
    authorized_keys is replaced with this session's throw-away key. Without
    explicit hosts, start() takes a free target slot (SLOT_LOCK, tried
    non-blocking, held until stop()) and the hosts t1/t2 are that slot's users,
    so concurrent sessions and pytest-xdist workers on one machine each have
    their own users and sshd. With explicit hosts, a lock on that set of users
    is held instead (waited for). Until start(), hosts and users are empty.
    """

    def __init__(self, workdir: Path, hosts: dict[str, str] | None = None) -> None:
        self.workdir = Path(workdir)
        self._explicit_hosts = dict(hosts) if hosts else None
        self.hosts: dict[str, str] = dict(self._explicit_hosts or {})
        self.users = list(self.hosts.values())
        self.slot: int | None = None
        self.port = 0
        self.private_key = self.workdir / "id_ed25519"
        self.public_key = self.workdir / "id_ed25519.pub"
        self.config_path = self.workdir / "sshd_config"
        self.log_path = self.workdir / "sshd.log"
        self._proc: subprocess.Popen | None = None
        self._lock: t.IO[str] | None = None

    # -- lifecycle -------------------------------------------------------
    def start(self) -> SshTargets:
        """Install (if needed) and start sshd, create users and keys; returns self."""
        if os.geteuid() != 0:
            raise RuntimeError("the e2e SSH targets need root (useradd, sshd); run the tests as root, as CI does")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._acquire_lock()
        try:
            self._ensure_openssh_server()
            self._make_keys()
            with open(USERS_LOCK, "a", encoding="utf-8") as users_lock:
                fcntl.flock(users_lock, fcntl.LOCK_EX)
                for user in self.users:
                    self._ensure_user(user)
            for user in self.users:
                self._install_key(user)
                self.reset_cmdop(user)
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation directory
            for attempt in range(5):  # a free port may be taken by another process before sshd binds it
                self.port = free_port()
                self._write_config()
                _run([SSHD, "-t", "-f", str(self.config_path)])
                with open(self.log_path, "ab") as log:
                    self._proc = subprocess.Popen(  # pylint: disable=consider-using-with
                        [SSHD, "-D", "-f", str(self.config_path), "-E", str(self.log_path)],
                        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    )
                try:
                    self._wait_until_ready(timeout=60.0)
                    break
                except RuntimeError:
                    if self._proc.poll() is None or attempt == 4:
                        raise
                    self._proc = None
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop sshd and every session it still serves (ansible's ControlPersist masters then exit too)."""
        if self._proc is not None:
            _stop_process(self._proc, with_descendants=True)
            self._proc = None
        if self._lock is not None:
            self._lock.close()  # releases the flock
            self._lock = None

    def _lock_paths(self) -> list[tuple[int | None, str]]:
        if self._explicit_hosts is not None:
            digest = hashlib.sha256(" ".join(sorted(self._explicit_hosts.values())).encode()).hexdigest()[:12]
            return [(None, HOSTS_LOCK % digest)]
        return [(slot, SLOT_LOCK % slot) for slot in range(TARGET_SLOTS)]

    def _acquire_lock(self) -> None:
        if self._lock is not None:
            return
        candidates = self._lock_paths()
        deadline = time.monotonic() + TARGETS_LOCK_TIMEOUT
        announced = False
        while True:
            for slot, path in candidates:
                lock = _try_lock(path)
                if lock is not None:
                    self._lock = lock
                    if slot is not None:
                        self.slot = slot
                        self.hosts = slot_hosts(slot)
                        self.users = list(self.hosts.values())
                    return
            names = ", ".join(candidate[1] for candidate in candidates[:2]) + (" ..." if len(candidates) > 2 else "")
            if time.monotonic() > deadline:
                raise RuntimeError("other e2e sessions have held %s for %ss" % (names, TARGETS_LOCK_TIMEOUT))
            if not announced:
                sys.stderr.write("waiting for other e2e test sessions to release %s\n" % names)
                announced = True
            time.sleep(1)

    @staticmethod
    def _ensure_openssh_server() -> None:
        if os.path.exists(SSHD):
            return
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        _run(["apt-get", "update", "-qq"], env=env)
        _run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "openssh-server"], env=env)

    def _make_keys(self) -> None:
        for path in (self.workdir / "ssh_host_ed25519_key", self.private_key):
            if not path.exists():
                _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "cmdop-fleet-e2e", "-f", str(path)])

    @staticmethod
    def _ensure_user(user: str) -> None:
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            _run(["useradd", "--create-home", "--shell", "/bin/bash", user])
            entry = pwd.getpwnam(user)
        if entry.pw_shell != "/bin/bash":
            _run(["usermod", "--shell", "/bin/bash", user])
        if not os.path.isdir(entry.pw_dir):
            os.makedirs(entry.pw_dir, mode=0o750)
            os.chown(entry.pw_dir, entry.pw_uid, entry.pw_gid)
        # With UsePAM no, sshd refuses "locked" accounts ('!' password, useradd's
        # default) even for public-key logins; '*' means "no password" but not locked.
        _run(["usermod", "--password", "*", user])

    def _install_key(self, user: str) -> None:
        entry = pwd.getpwnam(user)
        ssh_dir = Path(entry.pw_dir) / ".ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        keys = ssh_dir / "authorized_keys"
        keys.write_text(self.public_key.read_text(encoding="utf-8"), encoding="utf-8")
        for path, mode in ((ssh_dir, 0o700), (keys, 0o600)):
            os.chown(path, entry.pw_uid, entry.pw_gid)
            os.chmod(path, mode)

    def _write_config(self) -> None:
        lines = [
            "# written by tests/e2e/harness.py",
            "Port %d" % self.port,
            "ListenAddress 127.0.0.1",
            "HostKey %s" % (self.workdir / "ssh_host_ed25519_key"),
            "PidFile %s" % (self.workdir / "sshd.pid"),
            "AuthorizedKeysFile .ssh/authorized_keys",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "PermitRootLogin no",
            "AllowUsers %s" % " ".join(self.users),
            "Subsystem sftp internal-sftp",
            "MaxStartups 100:30:200",
            "MaxSessions 100",
            "LogLevel VERBOSE",
        ]
        self.config_path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def _wait_until_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError("sshd exited with %s:\n%s" % (self._proc.returncode, self.log()))
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                    if sock.recv(64).startswith(b"SSH-"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("sshd did not accept connections on port %d within %ss:\n%s" % (self.port, timeout, self.log()))
            time.sleep(0.1)

    def log(self) -> str:
        """sshd's log so far."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    # -- helpers for tests -----------------------------------------------
    def user(self, user_or_host: str) -> str:
        """The Unix user for a host alias (t1) or user name (cmdop-t1)."""
        return self.hosts.get(user_or_host, user_or_host)

    def home(self, user_or_host: str) -> Path:
        """Home directory of a target user (host alias or user name)."""
        return Path(pwd.getpwnam(self.user(user_or_host)).pw_dir)

    def reset_cmdop(self, user_or_host: str | None = None) -> None:
        """Remove ~/.cmdop of one target user, or of all when None."""
        users = [self.user(user_or_host)] if user_or_host else self.users
        for user in users:
            shutil.rmtree(self.home(user) / ".cmdop", ignore_errors=True)

    def host_vars(self, host: str) -> dict[str, t.Any]:
        """Connection variables of one inventory host."""
        return {
            "ansible_host": "127.0.0.1",
            "ansible_port": self.port,
            "ansible_user": self.hosts[host],
            "ansible_ssh_private_key_file": str(self.private_key),
            "ansible_python_interpreter": TARGET_PYTHON,
            "ansible_ssh_common_args": SSH_COMMON_ARGS,
        }

    def inventory(self, path: str | os.PathLike, extra_vars_per_host: dict[str, dict[str, t.Any]] | None = None,
                  hosts: t.Iterable[str] | None = None) -> Path:
        """Write a YAML inventory with the target hosts (all by default) and return its path.

        extra_vars_per_host maps a host alias (or its user name) to more host variables.
        """
        extra = {self._alias(key): value for key, value in (extra_vars_per_host or {}).items()}
        unknown = set(extra) - set(self.hosts)
        if unknown:
            raise KeyError("unknown target host(s): %s" % ", ".join(sorted(unknown)))
        data = {"all": {"hosts": {}}}
        for host in hosts or self.hosts:
            data["all"]["hosts"][host] = dict(self.host_vars(host), **extra.get(host, {}))
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(data, default_flow_style=False, sort_keys=False), encoding="utf-8")
        return path

    def _alias(self, user_or_host: str) -> str:
        for alias, user in self.hosts.items():
            if user_or_host in (alias, user):
                return alias
        return user_or_host

    def ssh(self, user_or_host: str, command: str, check: bool = False, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run a command on a target over SSH as its user (no ansible involved)."""
        cmd = ["ssh", "-i", str(self.private_key), "-p", str(self.port), "-o", "BatchMode=yes",
               "-o", "IdentitiesOnly=yes"] + SSH_COMMON_ARGS.split() + ["-o", "LogLevel=ERROR",
                                                                        "%s@127.0.0.1" % self.user(user_or_host), command]
        return subprocess.run(cmd, check=check, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout)


@dataclasses.dataclass
class PlaybookResult:
    """Outcome of one ansible-playbook run: rc, stdout/stderr (default callback text) and parsed results."""

    rc: int
    stdout: str
    stderr: str
    command: list[str]
    data: dict[str, t.Any]

    @property
    def plays(self) -> list[dict[str, t.Any]]:
        """[{name, tasks: [{name, action, handler, hosts: {host: {status, result}}}]}]."""
        return self.data.get("plays", [])

    @property
    def stats(self) -> dict[str, dict[str, int]]:
        """Play recap per host: ok, changed, failures, unreachable, skipped, rescued, ignored."""
        return self.data.get("stats", {})

    def task_entries(self, name: str | None = None, host: str | None = None) -> list[dict[str, t.Any]]:
        """Every recorded task (optionally by name, also matching "role : name", and by host)."""
        found = []
        for play in self.plays:
            for task in play["tasks"]:
                if name is not None and task["name"] != name and not task["name"].endswith(" : " + name):
                    continue
                if host is not None and host not in task["hosts"]:
                    continue
                found.append(task)
        return found

    def task(self, name: str, host: str) -> dict[str, t.Any]:
        """Result dict of the (last) task called name on host; AssertionError with context if absent."""
        entries = self.task_entries(name, host)
        if not entries:
            known = sorted({task["name"] for play in self.plays for task in play["tasks"]})
            raise AssertionError("no result for task %r on host %r; tasks run: %s\n%s" % (name, host, known, self.describe()))
        return entries[-1]["hosts"][host]["result"]

    def status(self, name: str, host: str) -> str:
        """ok, changed, failed, skipped or unreachable for the (last) task called name on host."""
        self.task(name, host)
        return self.task_entries(name, host)[-1]["hosts"][host]["status"]

    def describe(self) -> str:
        """Everything useful for an assertion message."""
        return "$ %s\nrc=%s\n--- stdout ---\n%s\n--- stderr ---\n%s" % (" ".join(self.command), self.rc, self.stdout, self.stderr)


@dataclasses.dataclass
class CliResult:
    """Outcome of another ansible CLI run."""

    rc: int
    stdout: str
    stderr: str
    command: list[str]

    def json(self) -> t.Any:
        """stdout parsed as JSON."""
        return json.loads(self.stdout)

    def describe(self) -> str:
        """Everything useful for an assertion message."""
        return "$ %s\nrc=%s\n--- stdout ---\n%s\n--- stderr ---\n%s" % (" ".join(self.command), self.rc, self.stdout, self.stderr)


class AnsibleRunner:
    """Runs the venv's ansible CLIs with a hermetic environment, from workdir.

    Every inherited ANSIBLE_* variable is dropped; ANSIBLE_CONFIG points at an
    empty file (no ansible.cfg from the cwd, $HOME or /etc applies). There is no
    global interpreter setting: the inventory from SshTargets sets
    ansible_python_interpreter=/usr/bin/python3 per host; an implicit localhost
    uses the venv's python (ansible's default).
    """

    def __init__(self, collections_path: Path, workdir: Path) -> None:
        self.collections_path = Path(collections_path)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.bin = venv_bin()
        self._count = 0
        self._lock = threading.Lock()  # tests may run playbooks from several threads at once

    def env(self, extra: dict[str, str | None] | None = None) -> dict[str, str]:
        """The environment for an ansible CLI; extra values override, None removes a variable."""
        config = self.workdir / "harness-ansible.cfg"
        if not config.exists():
            config.write_text("# intentionally empty: written by tests/e2e/harness.py\n", encoding="utf-8")
        env = {key: value for key, value in os.environ.items() if not key.startswith("ANSIBLE_")}
        env.update({
            "PATH": "%s:%s" % (self.bin, os.environ.get("PATH", "/usr/bin:/bin")),
            "ANSIBLE_CONFIG": str(config),
            "ANSIBLE_COLLECTIONS_PATH": str(self.collections_path),
            "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "False",
            "ANSIBLE_HOST_KEY_CHECKING": "False",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_RETRY_FILES_ENABLED": "0",
            "ANSIBLE_LOCAL_TEMP": str(self.workdir / "ansible-local-tmp"),
            "ANSIBLE_TIMEOUT": "30",
            # ssh's ControlPath socket: not under $HOME (a test's HOME in tmp_path, deeper under pytest-xdist's
            # popen-gwN, can pass the 107 characters a Unix socket path may have)
            "ANSIBLE_SSH_CONTROL_PATH_DIR": control_path_dir(),
            "LC_ALL": os.environ.get("LC_ALL") or "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
        })
        env.pop(RESULTS_ENV, None)
        for key, value in (extra or {}).items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = str(value)
        return env

    def _next(self, stem: str, suffix: str) -> Path:
        with self._lock:
            self._count += 1
            return self.workdir / ("%s-%d%s" % (stem, self._count, suffix))

    def _callback_dir(self) -> Path:
        """A directory holding only harness.py (symlinked), for ANSIBLE_CALLBACK_PLUGINS.

        Not tests/e2e itself: ansible would try to load every .py file there
        (conftest.py, test_*.py) as a callback plugin.
        """
        directory = self.workdir / "callback_plugins"
        link = directory / ("%s.py" % CALLBACK_NAME)
        with self._lock:
            if not link.is_symlink():
                directory.mkdir(parents=True, exist_ok=True)
                link.symlink_to(Path(__file__).resolve())
        return directory

    def run(self, tool: str, args: t.Sequence[str | os.PathLike], env: dict[str, str | None] | None = None,
            input_text: str | None = None, timeout: float = 600) -> CliResult:
        """Run ansible, ansible-inventory, ansible-doc, ansible-galaxy ... from the venv."""
        cmd = [str(self.bin / tool)] + [str(arg) for arg in args]
        proc = subprocess.run(cmd, cwd=self.workdir, env=self.env(env), capture_output=True, text=True, check=False,
                              input=input_text, stdin=None if input_text is not None else subprocess.DEVNULL, timeout=timeout)
        return CliResult(proc.returncode, proc.stdout, proc.stderr, cmd)

    def run_inventory(self, args: t.Sequence[str | os.PathLike], env: dict[str, str | None] | None = None) -> CliResult:
        """ansible-inventory with the given arguments."""
        return self.run("ansible-inventory", args, env=env)

    def run_playbook(self, playbook: str | os.PathLike | list | dict, inventory: str | os.PathLike | None, *,
                     extra_vars: dict[str, t.Any] | str | None = None, check: bool = False, diff: bool = False,
                     verbosity: int = 0, env: dict[str, str | None] | None = None, limit: str | None = None,
                     args: t.Sequence[str] = (), timeout: float = 900) -> PlaybookResult:
        """Run ansible-playbook and return a PlaybookResult.

        playbook: a path to a playbook file, YAML text, or the plays as Python data.
        inventory: a path (e.g. from SshTargets.inventory) or an inventory string; None means implicit localhost.
        extra_vars: a dict (passed as @file, so values keep their types) or a raw -e string.
        """
        if isinstance(playbook, (list, dict)):
            path = self._next("playbook", ".yml")
            path.write_text(yaml.safe_dump(playbook if isinstance(playbook, list) else [playbook], sort_keys=False), encoding="utf-8")
        elif isinstance(playbook, os.PathLike) or ("\n" not in playbook and os.path.isfile(playbook)):
            path = Path(playbook).resolve()
        else:
            path = self._next("playbook", ".yml")
            path.write_text(playbook, encoding="utf-8")
        results_file = self._next("results", ".json")
        cmd: list[str] = []
        if inventory is not None:
            cmd += ["-i", str(inventory)]
        if isinstance(extra_vars, dict):
            vars_file = self._next("extra-vars", ".json")
            vars_file.write_text(json.dumps(extra_vars), encoding="utf-8")
            cmd += ["-e", "@%s" % vars_file]
        elif extra_vars:
            cmd += ["-e", extra_vars]
        if check:
            cmd.append("--check")
        if diff:
            cmd.append("--diff")
        if limit:
            cmd += ["--limit", limit]
        if verbosity:
            cmd.append("-" + "v" * verbosity)
        cmd += list(args) + [str(path)]
        callback_env: dict[str, str | None] = {
            "ANSIBLE_CALLBACK_PLUGINS": str(self._callback_dir()),
            "ANSIBLE_CALLBACKS_ENABLED": CALLBACK_NAME,
            RESULTS_ENV: str(results_file),
        }
        callback_env.update(env or {})
        cli = self.run("ansible-playbook", cmd, env=callback_env, timeout=timeout)
        if "callback plugin (<ansible.plugins.callback.%s." % CALLBACK_NAME in " ".join(cli.stderr.split()):  # wrapped before 2.19
            # ansible-playbook only warns when a callback raises; results would be missing silently.
            raise RuntimeError("the harness callback failed:\n%s" % cli.stderr)
        data: dict[str, t.Any] = {}
        if results_file.exists():
            data = json.loads(results_file.read_text(encoding="utf-8"))
        return PlaybookResult(cli.rc, cli.stdout, cli.stderr, cli.command, data)


class Emulator:
    """tests/emulator/cmdop_emulator.py running as a subprocess on a free port."""

    LISTENING = re.compile(r"CMDOP emulator listening on (https?://\S+)")

    def __init__(self, seed: str | os.PathLike | dict | None, workdir: Path, script: Path = EMULATOR_SCRIPT,
                 python: str = sys.executable, extra_args: t.Sequence[str] = ()) -> None:
        self.workdir = Path(workdir)
        self.script = Path(script)
        self.python = python
        self.extra_args = list(extra_args)
        self.seed = seed
        self.url = ""
        self.verify: bool | str = True  # for admin calls: a CA file when the emulator serves HTTPS
        self.stdout_path = self.workdir / "emulator.stdout"
        self.stderr_path = self.workdir / "emulator.stderr"
        self._proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> Emulator:
        """Start the emulator and wait for its "listening" line; returns self."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if isinstance(self.seed, dict):
            seed_path = self.workdir / "emulator-seed.json"
            seed_path.write_text(json.dumps(self.seed, indent=2), encoding="utf-8")
        else:
            seed_path = Path(self.seed if self.seed is not None else DEFAULT_EMULATOR_SEED)
        cmd = [self.python, str(self.script), "--seed", str(seed_path), "--port", "0"] + self.extra_args
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,  # pylint: disable=consider-using-with
                                          cwd=self.workdir, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        deadline = time.monotonic() + timeout
        while True:
            match = self.LISTENING.search(self.stdout_path.read_text(encoding="utf-8", errors="replace"))
            if match:
                self.url = match.group(1).rstrip("/")
                return self
            if self._proc.poll() is not None:
                raise RuntimeError("emulator exited with %s before listening:\n%s" % (self._proc.returncode, self.output()))
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("emulator did not report listening within %ss:\n%s" % (timeout, self.output()))
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        if self._proc is not None:
            _stop_process(self._proc)
            self._proc = None

    def output(self) -> str:
        """The emulator's stdout and stderr so far."""
        parts = []
        for path in (self.stdout_path, self.stderr_path):
            try:
                parts.append(path.read_text(encoding="utf-8", errors="replace"))
            except OSError:
                pass
        return "\n".join(parts)

    @property
    def port(self) -> int:
        """The TCP port it listens on."""
        return int(self.url.rsplit(":", 1)[1])

    def admin(self, method: str, path: str, json: t.Any = None, expect_ok: bool = True) -> t.Any:  # pylint: disable=redefined-outer-name
        """Call the admin API: path is "/_admin/faults" or just "faults". Returns the parsed JSON body (or text, or None).

        Raises requests.HTTPError on an error status unless expect_ok is False.
        """
        # imported here, not at the top: this file is also the callback plugin of every ansible-playbook the tests run,
        # which would otherwise import requests (about 0.1 s of CPU) for nothing
        import requests  # pylint: disable=import-outside-toplevel

        if not path.startswith("/"):
            path = "/_admin/" + path
        response = requests.request(method.upper(), self.url + path, json=json, timeout=30, verify=self.verify)
        if expect_ok:
            response.raise_for_status()
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            return response.text


class CallbackModule(CallbackBase):
    """Aggregate callback (this file is also loaded by ansible-playbook as plugin "harness").

    Records, per play and task, each host's status and result dict (internal
    _ansible_* keys stripped, no_log censoring already applied by ansible), and
    the play recap, to the JSON file named by $CMDOP_HARNESS_RESULTS.
    """

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "harness"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self._path = os.environ.get(RESULTS_ENV)
        self._plays: list[dict[str, t.Any]] = []
        self._tasks: dict[str, dict[str, t.Any]] = {}

    def _current_play(self) -> dict[str, t.Any]:
        if not self._plays:
            self._plays.append({"name": "", "tasks": []})
        return self._plays[-1]

    def _task_entry(self, task: t.Any, handler: bool = False) -> dict[str, t.Any]:
        uuid = str(task._uuid)  # pylint: disable=protected-access
        entry = self._tasks.get(uuid)
        if entry is None:
            entry = {"name": task.get_name().strip(), "action": task.action, "uuid": uuid, "handler": handler, "hosts": {}}
            self._tasks[uuid] = entry
            self._current_play()["tasks"].append(entry)
        return entry

    @staticmethod
    def _parts(result: t.Any) -> tuple[t.Any, t.Any, dict[str, t.Any]]:
        """(host, task, result dict) of a task result: 2.19's CallbackTaskResult has public names, the older TaskResult only _host, _task, _result."""
        if hasattr(result, "result"):
            return result.host, result.task, result.result
        return result._host, result._task, result._result  # pylint: disable=protected-access

    def _record(self, result: t.Any, status: str) -> None:
        host, task, payload = self._parts(result)
        data = strip_internal_keys(dict(payload))
        if status == "ok" and data.get("changed"):
            status = "changed"
        self._task_entry(task)["hosts"][host.name] = {"status": status, "result": data}

    def v2_playbook_on_play_start(self, play: t.Any) -> None:
        self._plays.append({"name": play.get_name().strip(), "tasks": []})

    def v2_playbook_on_task_start(self, task: t.Any, is_conditional: bool) -> None:
        self._task_entry(task)

    def v2_playbook_on_handler_task_start(self, task: t.Any) -> None:
        self._task_entry(task, handler=True)

    def v2_runner_on_ok(self, result: t.Any) -> None:
        self._record(result, "ok")

    def v2_runner_on_failed(self, result: t.Any, ignore_errors: bool = False) -> None:
        self._record(result, "failed")

    def v2_runner_on_skipped(self, result: t.Any) -> None:
        self._record(result, "skipped")

    def v2_runner_on_unreachable(self, result: t.Any) -> None:
        self._record(result, "unreachable")

    def v2_playbook_on_stats(self, stats: t.Any) -> None:
        if not self._path:
            return
        recap = {host: stats.summarize(host) for host in sorted(stats.processed)}
        with open(self._path, "w", encoding="utf-8") as out:
            json.dump({"plays": self._plays, "stats": recap}, out, indent=2, sort_keys=True, default=str)
