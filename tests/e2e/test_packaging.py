"""The collection installed the ways users install it: a Galaxy tarball, an execution environment, AWX.

* Galaxy: ``ansible-galaxy collection build`` makes the tarball; nothing of it is development junk; installed into
  an empty collections path it runs the demo playbook and an inventory, with no copy of the checkout in reach.
* Execution environment: ``ansible-builder create`` writes a build context from a version 3 definition, and the
  context's own steps (install the collection, then ``introspect.py``) give the collection's Python and system needs.
* AWX / Automation Controller: the custom credential type's injectors, rendered as AWX renders them, go into the
  ``env/envvars`` of an ``ansible-runner`` private data dir (AWX runs jobs with ansible-runner); the inventory source
  (``fleets_from: api``) and a sync job run from those environment variables alone, with no token file on the
  controller (HOME is an empty folder).
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import typing as t
from pathlib import Path

import jinja2.sandbox
import pytest
import yaml

from harness import AnsibleRunner, venv_bin

ROOT = Path(__file__).resolve().parents[2]
ALICE = "u-alice"
DEMO_FLEETS = {"team-a", "lab", "staging"}  # alice's fleets in tests/emulator/seed-demo.json

# Paths (or path parts) that are development junk in a built collection.
JUNK = (".venv", "venv", "build", "tests/output", ".ansible", "__pycache__", ".pytest_cache", ".mypy_cache", ".tox",
        ".git", ".ci", "scripts", "demo", ".gitignore", "Makefile", "pytest.ini", "requirements-dev.txt",
        "changelogs/.plugin-cache.yaml", "*.pyc", "*.pyo", "*.tar.gz", "*.orig", "*.rej", "*.swp", "*~", ".DS_Store", ".coverage")
# What users need from the tarball.
NEEDED = ("MANIFEST.json", "FILES.json", "README.md", "CHANGELOG.md", "COPYING", "requirements.txt", "bindep.txt",
          "meta/runtime.yml", "meta/execution-environment.yml", "changelogs/changelog.yaml", "extensions/awx/credential_type.yml",
          "plugins/modules/sync.py", "plugins/modules/fleet_info.py", "plugins/inventory/cmdop.py",
          "roles/fleet_sync/tasks/main.yml", "roles/fleet_inventory/tasks/main.yml")


def junk(member: str) -> t.Optional[str]:
    """The JUNK pattern a tarball member matches, if any."""
    parts = member.split("/")
    for pattern in JUNK:
        if "/" in pattern:
            if member == pattern or member.startswith(pattern + "/"):
                return pattern
        elif any(fnmatch.fnmatch(part, pattern) for part in parts):
            return pattern
    return None


def run(cmd: t.Sequence[t.Any], **kwargs: t.Any) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(arg) for arg in cmd], capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL, **kwargs)
    assert proc.returncode == 0, "%s failed (rc=%s):\n%s\n%s" % (" ".join(map(str, cmd)), proc.returncode, proc.stdout, proc.stderr)
    return proc


@pytest.fixture(scope="module")
def tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ansible-galaxy collection build, as a maintainer publishes the collection."""
    out = tmp_path_factory.mktemp("galaxy-build")
    run([venv_bin() / "ansible-galaxy", "collection", "build", ROOT, "--output-path", out], env=clean_env())
    built = list(out.glob("cmdop-fleet-*.tar.gz"))
    assert len(built) == 1, built
    return built[0]


@pytest.fixture(scope="module")
def installed(tarball: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tarball installed into an empty collections path; returns that path."""
    collections = tmp_path_factory.mktemp("installed") / "collections"
    collections.mkdir()
    # Only that path configured: a copy installed elsewhere (~/.ansible/collections) must not count as "already installed".
    run([venv_bin() / "ansible-galaxy", "collection", "install", tarball, "-p", collections], env=clean_env(ANSIBLE_COLLECTIONS_PATH=str(collections)))
    assert (collections / "ansible_collections" / "cmdop" / "fleet" / "MANIFEST.json").is_file()
    return collections


def clean_env(**extra: str) -> dict:
    """os.environ without ANSIBLE_* and CMDOP_* variables."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("ANSIBLE_", "CMDOP_"))}
    env["PATH"] = "%s:%s" % (venv_bin(), os.environ.get("PATH", "/usr/bin:/bin"))
    env.update(extra)
    return env


# ---- Galaxy -------------------------------------------------------------------------------------


def test_the_tarball_holds_what_users_need_and_no_development_junk(tarball: Path) -> None:
    with tarfile.open(tarball) as archive:
        members = [member.name for member in archive.getmembers()]
        files = json.load(archive.extractfile("FILES.json"))["files"]  # type: ignore[arg-type]
    found = sorted("%s (%s)" % (member, junk(member)) for member in members if junk(member))
    assert not found, "development junk in %s: %s" % (tarball.name, ", ".join(found))
    missing = [path for path in NEEDED if path not in members]
    assert not missing, missing
    assert {entry["name"] for entry in files if entry["name"] != "."} == set(members) - {"MANIFEST.json", "FILES.json"}


def test_the_junk_check_sees_junk() -> None:
    assert junk(".venv/bin/python") == ".venv"
    assert junk("plugins/modules/__pycache__/sync.cpython-311.pyc") == "__pycache__"
    assert junk("tests/output/.tmp/x") == "tests/output"
    assert junk(".ansible/collections") == ".ansible"
    assert junk("plugins/modules/sync.py") is None and junk("tests/unit/test_x.py") is None


def test_the_installed_collection_runs_the_demo_and_an_inventory(installed: Path, emulator: t.Any, tmp_path: Path) -> None:
    """demo/site.yml and demo/write-inventory.yml, as scripts/demo.sh runs them, with only the installed copy in reach."""
    runner = AnsibleRunner(installed, tmp_path / "ansible")
    doc = runner.run("ansible-doc", ["--json", "cmdop.fleet.sync"])
    assert doc.rc == 0, doc.describe()
    assert json.loads(doc.stdout)["cmdop.fleet.sync"]["doc"]["filename"].startswith(str(installed)), "the checkout was used"

    cmdop_dir = tmp_path / "home" / ".cmdop"
    cmdop_dir.mkdir(parents=True, mode=0o700)
    run([sys.executable, ROOT / "demo" / "prepare.py", emulator.url, cmdop_dir])
    demo_vars = {"fleet_sync_api_url": emulator.url, "fleet_sync_path": str(cmdop_dir / "ssh_workspaces.json"),
                 "fleet_sync_token_file": str(cmdop_dir / "token_prod.json"), "fleet_sync_install_requirements": False}
    first = runner.run_playbook(ROOT / "demo" / "site.yml", ROOT / "demo" / "inventory.yml", extra_vars=demo_vars, diff=True)
    assert first.rc == 0, first.describe()
    assert {item["name"] for item in first.task("Sync the fleets into the host's fleet file", "localhost")["added"]} == DEMO_FLEETS
    again = runner.run_playbook(ROOT / "demo" / "site.yml", ROOT / "demo" / "inventory.yml", extra_vars=demo_vars)
    assert again.rc == 0 and again.stats["localhost"]["changed"] == 0, again.describe()

    source = tmp_path / "fleets.cmdop.yml"
    written = runner.run_playbook(ROOT / "demo" / "write-inventory.yml", None, extra_vars={
        "fleet_inventory_file": str(source), "fleet_inventory_path": str(cmdop_dir / "ssh_workspaces.json"),
        "fleet_inventory_token_file": str(cmdop_dir / "token_prod.json"), "fleet_inventory_api_url": emulator.url})
    assert written.rc == 0, written.describe()
    graph = runner.run_inventory(["-i", str(source), "--graph"], env={"ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "true"})
    assert graph.rc == 0, graph.describe()
    assert all("@fleet_%s:" % name.replace("-", "_") in graph.stdout for name in DEMO_FLEETS), graph.stdout


# ---- Execution environment -------------------------------------------------------------------------


def requirement_lines(path: Path) -> t.List[str]:
    return [line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines() if line.split("#", 1)[0].strip()]


def test_the_collection_metadata_for_ansible_builder_is_version_3() -> None:
    from ansible_builder.ee_schema import validate_schema  # pylint: disable=import-outside-toplevel

    metadata = yaml.safe_load((ROOT / "meta" / "execution-environment.yml").read_text(encoding="utf-8"))
    assert metadata["version"] == 3
    validate_schema(metadata)
    assert metadata["dependencies"] == {"python": "requirements.txt", "system": "bindep.txt"}


def test_ansible_builder_create_gives_the_collections_python_and_system_needs(tarball: Path, tmp_path: Path) -> None:
    definition = tmp_path / "execution-environment.yml"
    definition.write_text(yaml.safe_dump({
        "version": 3,
        "images": {"base_image": {"name": "quay.io/ansible/awx-ee:latest"}},
        "dependencies": {"ansible_core": {"package_pip": "ansible-core>=2.16,<2.20"}, "ansible_runner": {"package_pip": "ansible-runner"},
                         "galaxy": {"collections": [{"name": "collections/%s" % tarball.name, "type": "file"}]}},
        "additional_build_files": [{"src": str(tarball), "dest": "collections"}],
    }, sort_keys=False), encoding="utf-8")
    context = tmp_path / "context"
    run([venv_bin() / "ansible-builder", "create", "-f", definition, "-c", context], cwd=tmp_path, env=clean_env())
    build = context / "_build"
    containerfile = next(path for path in (context / "Containerfile", context / "Dockerfile") if path.exists()).read_text(encoding="utf-8")
    assert "ansible-galaxy collection install" in containerfile and "introspect.py introspect" in containerfile
    assert (build / "collections" / tarball.name).is_file()

    # The image build's galaxy and builder stages, without a container: install the requirements, then introspect.
    image_collections = tmp_path / "usr-share-ansible" / "collections"
    run([venv_bin() / "ansible-galaxy", "collection", "install", "-r", build / "requirements.yml", "--collections-path", image_collections],
        cwd=build, env=clean_env(ANSIBLE_GALAXY_DISABLE_GPG_VERIFY="1", ANSIBLE_COLLECTIONS_PATH=str(image_collections)))
    assert (image_collections / "ansible_collections" / "cmdop" / "fleet" / "meta" / "execution-environment.yml").is_file()
    pip_out, bindep_out = tmp_path / "requirements.txt", tmp_path / "bindep.txt"
    run([sys.executable, build / "scripts" / "introspect.py", "introspect", image_collections,
         "--write-pip", pip_out, "--write-bindep", bindep_out], env=clean_env())
    pip_lines, bindep_lines = requirement_lines(pip_out), requirement_lines(bindep_out)
    assert sorted(pip_lines) == sorted(requirement_lines(ROOT / "requirements.txt")), pip_out.read_text(encoding="utf-8")
    assert sorted(bindep_lines) == sorted(requirement_lines(ROOT / "bindep.txt")), bindep_out.read_text(encoding="utf-8")
    assert "cmdop.fleet" in pip_out.read_text(encoding="utf-8")


# ---- AWX / Automation Controller ---------------------------------------------------------------------


CREDENTIAL_TYPE = ROOT / "extensions" / "awx" / "credential_type.yml"


def awx_injected_env(inputs: dict) -> dict:
    """The env injectors of the credential type rendered as AWX renders them (sandboxed Jinja, missing inputs empty)."""
    credential_type = yaml.safe_load(CREDENTIAL_TYPE.read_text(encoding="utf-8"))
    fields = {field["id"]: field for field in credential_type["inputs"]["fields"]}
    assert set(inputs) <= set(fields), set(inputs) - set(fields)
    namespace = {name: inputs.get(name, "") for name in fields}
    environment = jinja2.sandbox.ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined)
    return {name: environment.from_string(template).render(**namespace) for name, template in credential_type["injectors"]["env"].items()}


def test_the_credential_type_is_what_awx_accepts() -> None:
    credential_type = yaml.safe_load(CREDENTIAL_TYPE.read_text(encoding="utf-8"))
    assert set(credential_type) == {"name", "description", "kind", "inputs", "injectors"}
    assert credential_type["kind"] == "cloud"  # the kind AWX allows for custom credential types, with "net"
    fields = {field["id"]: field for field in credential_type["inputs"]["fields"]}
    assert set(fields) == {"token", "api_url", "api_key"}
    assert fields["token"]["secret"] is True and fields["api_key"]["secret"] is True and not fields["api_url"].get("secret")
    assert all(field["type"] == "string" and field["label"] for field in fields.values())
    assert set(credential_type["injectors"]) == {"env"}
    assert awx_injected_env({"token": "t", "api_url": "u", "api_key": "k"}) == {"CMDOP_TOKEN": "t", "CMDOP_API_URL": "u", "CMDOP_API_KEY": "k"}


class AwxJob:
    """An ansible-runner private data dir laid out as AWX lays it out for a job (env/envvars, project/, inventory/)."""

    def __init__(self, root: Path, installed: Path, injected: dict) -> None:
        self.root = root
        # Short: ssh's ControlPath lives under it and a Unix socket path has at most 107 characters.
        self.empty_home = Path(tempfile.mkdtemp(prefix="awx-home."))
        (root / "env").mkdir(parents=True)
        (root / "project").mkdir()
        (root / "inventory").mkdir()
        config = root / "ansible.cfg"
        config.write_text("# empty: no ansible.cfg of the machine applies\n", encoding="utf-8")
        # AWX's own settings for inventory updates and jobs (STANDARD_INVENTORY_UPDATE_ENV), then the credential's injectors.
        envvars = dict(ANSIBLE_INVENTORY_UNPARSED_FAILED="True", ANSIBLE_INVENTORY_EXPORT="True", ANSIBLE_VERBOSE_TO_STDERR="True",
                       ANSIBLE_HOST_KEY_CHECKING="False", ANSIBLE_FORCE_COLOR="0", **injected)
        (root / "env" / "envvars").write_text(yaml.safe_dump(envvars), encoding="utf-8")
        # What the execution environment itself provides: the collection installed, a HOME without ~/.cmdop.
        self.process_env = clean_env(HOME=str(self.empty_home), ANSIBLE_COLLECTIONS_PATH=str(installed),
                                     ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="False", ANSIBLE_CONFIG=str(config))

    def close(self) -> None:
        shutil.rmtree(self.empty_home, ignore_errors=True)

    def run(self, driver: str) -> dict:
        """Run an ansible_runner call (Python source using ``pdd``) in a process with the EE's environment; returns its JSON."""
        source = "import json, sys, ansible_runner\npdd = sys.argv[1]\n" + driver
        proc = subprocess.run([sys.executable, "-c", source, str(self.root)], capture_output=True, text=True, check=False,
                              env=self.process_env, stdin=subprocess.DEVNULL, timeout=600)
        assert proc.returncode == 0, "ansible-runner driver failed:\n%s\n%s" % (proc.stdout, proc.stderr)
        return json.loads(proc.stdout.strip().splitlines()[-1])

    def output_text(self) -> str:
        """What the job showed: its stdout and every job event (what AWX stores and shows); not the runner's own copy of env."""
        paths = [path for path in (self.root / "artifacts").rglob("*") if path.is_file() and (path.name == "stdout" or path.parent.name == "job_events")]
        assert paths, "ansible-runner left no stdout or job events"
        return "\n".join(path.read_text(encoding="utf-8", errors="replace") for path in paths)


@pytest.fixture
def awx_job(installed: Path, tmp_path: Path) -> t.Iterator[t.Callable[[dict], AwxJob]]:
    """awx_job(injected_env) -> an AwxJob in tmp_path/pdd with the installed collection."""
    jobs: t.List[AwxJob] = []

    def make(injected: dict) -> AwxJob:
        jobs.append(AwxJob(tmp_path / "pdd", installed, injected))
        return jobs[-1]

    yield make
    for job in jobs:
        job.close()


INVENTORY_UPDATE = """
# What AWX runs for an inventory update: ansible-inventory --list --export through ansible-runner.
out = pdd + '/inventory-update.json'
r = ansible_runner.run_command(executable_cmd='ansible-inventory', cmdline_args=['--list', '--export', '-i', 'fleets.cmdop.yml',
                               '--output', out], private_data_dir=pdd, project_dir=pdd + '/project', host_cwd=pdd + '/project', quiet=True)
print(json.dumps({'rc': r[2], 'stderr': r[0] + r[1], 'inventory': json.load(open(out)) if r[2] == 0 else None}))
"""


@pytest.mark.parametrize("credential", ["token", "api_key", "refused token"])
def test_an_awx_inventory_source_from_the_credentials_environment_alone(awx_job: t.Callable, emulator: t.Any, credential: str) -> None:
    token = emulator.admin("POST", "tokens", {"user": ALICE, "expires_in": 3600})["access_token"]
    state = emulator.admin("GET", "state")
    team_a = next(fleet for fleet in state["fleets"] if fleet["slug"] == "team-a")
    inputs = {"token": {"api_url": emulator.url, "token": token}, "api_key": {"api_url": emulator.url, "api_key": team_a["api_keys"][0]},
              "refused token": {"api_url": emulator.url, "token": "cmdop_not_a_token_of_this_server_0123456789"}}[credential]
    job = awx_job(awx_injected_env(inputs))
    (job.root / "project" / "fleets.cmdop.yml").write_text("plugin: cmdop.fleet.cmdop\nfleets_from: api\n", encoding="utf-8")
    result = job.run(INVENTORY_UPDATE)
    if credential == "refused token":  # a failed update, with the reason, not an empty inventory
        assert result["rc"] != 0 and "unauthorized" in result["stderr"].lower() and inputs["token"] not in result["stderr"], result
        return
    assert result["rc"] == 0, result["stderr"]
    groups = {name for name in result["inventory"] if name.startswith("fleet_")}
    if credential == "token":
        assert groups == {"fleet_team_a", "fleet_lab", "fleet_staging"}
    else:  # an API key alone gives its own fleet
        assert len(groups) == 1 and result["inventory"][groups.pop()]["hosts"]
    assert not (job.empty_home / ".cmdop").exists(), "no token file or fleet file was read or written on the controller"
    for secret in inputs.values():
        if secret != emulator.url:
            assert secret not in job.output_text() + result["stderr"]


SYNC_JOB = """
# What AWX runs for a job template: ansible-playbook through ansible-runner.
r = ansible_runner.run(private_data_dir=pdd, playbook='site.yml', inventory=pdd + '/inventory/hosts.yml', quiet=True)
results = [e['event_data'].get('res') for e in r.events if e.get('event') == 'runner_on_ok' and e['event_data'].get('task_action') == 'cmdop.fleet.sync']
print(json.dumps({'rc': r.rc, 'status': r.status, 'stdout': r.stdout.read(), 'sync': results}))
"""


def test_an_awx_sync_job_from_the_credentials_environment(awx_job: t.Callable, emulator: t.Any, clean_targets: t.Any) -> None:
    """A job template running the fleet_sync role with fetch-once: the credential stays on the controller."""
    token = emulator.admin("POST", "tokens", {"user": ALICE, "expires_in": 3600})["access_token"]
    job = awx_job(awx_injected_env({"token": token, "api_url": emulator.url}))
    clean_targets.inventory(job.root / "inventory" / "hosts.yml")
    (job.root / "project" / "site.yml").write_text(yaml.safe_dump([{
        "name": "Sync CMDOP fleets", "hosts": "all", "gather_facts": False,
        "roles": [{"role": "cmdop.fleet.fleet_sync", "vars": {"fleet_sync_fetch_once": True}}],
    }], sort_keys=False), encoding="utf-8")
    result = job.run(SYNC_JOB)
    assert result["rc"] == 0 and result["status"] == "successful", result["stdout"]
    assert len(result["sync"]) == 2, result["sync"]
    for host in ("t1", "t2"):
        document = json.loads((clean_targets.home(host) / ".cmdop" / "ssh_workspaces.json").read_text(encoding="utf-8"))
        assert {entry["name"] for entry in document["workspaces"]} == DEMO_FLEETS
        assert not (clean_targets.home(host) / ".cmdop" / "token_prod.json").exists()
    listings = [item for item in emulator.admin("GET", "requests") if item["path"].startswith("/api/workspaces/")]
    assert len(listings) == 1, listings
    assert token not in job.output_text()
    assert not list(job.empty_home.rglob("token_*.json"))
