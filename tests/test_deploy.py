"""deploy/ without Docker or a cluster: every file parses, validates against the published
schemas (Compose specification, Kubernetes), and names only commands, options and settings
that exist in this project."""

from __future__ import annotations

import configparser
import json
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import jsonschema
import kubernetes_validate
import pytest
import redis
import yaml
from celery.bin.worker import worker as celery_worker

from producer.cli import main as segq_cli
from producer.commands.flower import flower_option_kinds, normalize_options
from shared.job_store import JobStore
from shared.local_redis import free_port
from shared.settings import Settings, load_settings, setting_env_names
from tests.support.brokers import round_trip
from workers.celery_app import POLL_QUEUE, SUBMIT_QUEUE, create_app

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
REPO = DEPLOY.parent
K8S_FILES = sorted((DEPLOY / "k8s").glob("*.yaml"))
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
NOT_KUBERNETES_KINDS = {"ScaledObject", "TriggerAuthentication", "Kustomization"}
"""KEDA's custom resources (checked by hand below) and kustomize's own file."""


def load_yaml_documents(path: Path) -> list[dict]:
    with path.open() as file:
        return [doc for doc in yaml.safe_load_all(file) if doc is not None]


def compose() -> dict:
    (document,) = load_yaml_documents(DEPLOY / "compose.yaml")
    return document


def k8s_documents() -> list[tuple[str, dict]]:
    return [(path.name, doc) for path in K8S_FILES for doc in load_yaml_documents(path)]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = (DEPLOY / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    instructions = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, arguments = line.strip().partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def unit_entries(path: Path) -> configparser.ConfigParser:
    """A systemd unit read as INI (raises on anything else); a repeated key keeps its last
    value, which is all these checks need."""
    parser = configparser.ConfigParser(interpolation=None, strict=False, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text())
    return parser


def unit_value(unit: configparser.ConfigParser, section: str, key: str) -> str | None:
    return unit.get(section, key, fallback=None)


# -- parsing and schemas ----------------------------------------------------------------------


def test_compose_file_validates_against_the_compose_specification():
    schema_file = resources.files("check_jsonschema") / "builtin_schemas/vendor/compose-spec.json"
    schema = json.loads(schema_file.read_text())
    errors = [
        f"{error.json_path}: {error.message}"
        for error in jsonschema.Draft202012Validator(schema).iter_errors(compose())
    ]
    assert errors == []


@pytest.mark.parametrize(
    ("name", "document"),
    [item for item in k8s_documents() if item[1]["kind"] not in NOT_KUBERNETES_KINDS],
    ids=lambda value: value if isinstance(value, str) else value["kind"],
)
def test_manifest_validates_strictly_against_kubernetes_schemas(name, document):
    try:
        kubernetes_validate.validate(document, kubernetes_validate.latest_version(), strict=True)
    except kubernetes_validate.ValidationError as error:
        pytest.fail(f"{name}: {'.'.join(map(str, error.path))}: {error.message}")
    assert document["metadata"].get("namespace", "segq") == "segq"


def test_kustomization_applies_every_manifest_except_the_secret_template():
    (kustomization,) = load_yaml_documents(DEPLOY / "k8s" / "kustomization.yaml")
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in K8S_FILES} - {"kustomization.yaml", "secret.yaml"}


def test_secret_template_holds_placeholders_only():
    (secret,) = load_yaml_documents(DEPLOY / "k8s" / "secret.yaml")
    assert secret["stringData"]
    for key, value in secret["stringData"].items():
        assert re.fullmatch(r"<[^>]+>(:<[^>]+>)?", value), f"{key} looks like a real value"


def test_every_secret_a_manifest_reads_is_in_the_secret_template():
    (secret,) = load_yaml_documents(DEPLOY / "k8s" / "secret.yaml")
    text = "\n".join(path.read_text() for path in K8S_FILES if path.name != "secret.yaml")
    used = set(re.findall(r"key: ([A-Z_]+)", text))
    assert used and used <= set(secret["stringData"])


# -- Redis ------------------------------------------------------------------------------------


def test_kubernetes_redis_config_is_deploy_redis_conf_verbatim():
    (config,) = [
        d for d in k8s_by_kind("ConfigMap") if d["metadata"]["name"] == "segq-redis-config"
    ]
    assert config["data"]["redis.conf"] == (DEPLOY / "redis.conf").read_text()


def test_compose_redis_runs_with_deploy_redis_conf():
    service = compose()["services"]["redis"]
    assert "./redis.conf:/usr/local/etc/redis/redis.conf:ro" in service["volumes"]
    assert service["command"][-1] == "/usr/local/etc/redis/redis.conf"


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server on PATH")
def test_redis_server_accepts_redis_conf_with_persistence_and_no_eviction(tmp_path):
    port = free_port()
    command = ["redis-server", str(DEPLOY / "redis.conf"), "--port", str(port),
               "--bind", "127.0.0.1", "--dir", str(tmp_path), "--maxmemory", "64mb"]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    client = redis.Redis(port=port, decode_responses=True, socket_timeout=2)
    try:
        config = first_answer(lambda: client.config_get("*"), server)
        assert config is not None, "redis-server refused deploy/redis.conf"
        assert config["appendonly"] == "yes"
        assert config["appendfsync"] == "everysec"
        assert config["maxmemory-policy"] == "noeviction"
        assert config["hash-max-listpack-value"] == "4096"
    finally:
        client.close()
        server.terminate()
        server.wait(10)


def first_answer(call: Callable[[], Any], server: subprocess.Popen) -> Any:
    """What ``call`` returns once the new server answers; None if the server exited."""
    for _ in range(100):
        if server.poll() is not None:
            return None
        try:
            return call()
        except redis.ConnectionError:
            time.sleep(0.05)
    raise AssertionError("redis-server did not answer")


def self_signed_certificate(directory: Path) -> tuple[str, str]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return str(cert), str(key)


@pytest.mark.skipif(
    shutil.which("redis-server") is None or shutil.which("openssl") is None,
    reason="needs redis-server and openssl",
)
def test_a_managed_redis_with_tls_and_a_password_works_as_job_store_and_broker(tmp_path):
    """The URLs the README documents for a managed Redis: rediss://, password, CA file."""
    cert, key = self_signed_certificate(tmp_path)
    port = free_port()
    command = ["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
               "--tls-cert-file", cert, "--tls-key-file", key, "--tls-auth-clients", "no",
               "--requirepass", "pw-1", "--save", "", "--dir", str(tmp_path)]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    query = f"ssl_cert_reqs=required&ssl_ca_certs={cert}"
    settings = load_settings(
        {},
        redis_url=f"rediss://:pw-1@127.0.0.1:{port}/0?{query}",
        broker_url=f"rediss://:pw-1@127.0.0.1:{port}/1?{query}",
    )
    try:
        store = JobStore.from_settings(settings)
        if first_answer(store.redis.ping, server) is None:
            pytest.skip(f"redis-server without TLS here: {server.stdout.read()[-200:]!r}")
        store.redis.close()
        app = create_app(settings)
        with app.connection_for_write() as connection:
            payload = round_trip(connection, "segq-tls-check")
        assert payload == {"job_id": "j1"}
    finally:
        server.terminate()
        server.wait(10)
        server.stdout.close()


# -- commands, options, settings -------------------------------------------------------------


def segq_invocations() -> list[tuple[str, list[str]]]:
    """(where, argv after `segq`) of every segq command the deploy files run."""
    found: list[tuple[str, list[str]]] = []
    image = dict(dockerfile_instructions())
    found.append(("Dockerfile", [*json.loads(image["ENTRYPOINT"])[1:], *json.loads(image["CMD"])]))
    found.append(("Dockerfile HEALTHCHECK", healthcheck_command()[1:]))
    for name, service in compose()["services"].items():
        if service.get("image", "").startswith("segq:"):
            found.append((f"compose {name}", list(service["command"])))
    for name, doc in k8s_documents():
        for container in pod_containers(doc):
            if container.get("command") == ["segq"]:
                found.append((f"{name} {container['name']}", list(container["args"])))
            for probe, command in probe_commands(container).items():
                if command[:1] == ["segq"]:
                    found.append((f"{name} {container['name']} {probe}", command[1:]))
    for path in UNITS:
        argv = shlex.split(unit_value(unit_entries(path), "Service", "ExecStart") or "")
        assert argv[0].endswith("/bin/segq"), path.name
        found.append((path.name, [arg.replace("%%", "%") for arg in argv[1:]]))
    return found


def probe_commands(container: dict) -> dict[str, list[str]]:
    """The exec command of each probe a container has."""
    probes = ("startupProbe", "readinessProbe", "livenessProbe")
    return {p: container[p]["exec"]["command"] for p in probes if "exec" in container.get(p, {})}


def healthcheck_command() -> list[str]:
    arguments = dict(dockerfile_instructions())["HEALTHCHECK"]
    return json.loads(arguments.partition("CMD ")[2])


def pod_containers(document: dict) -> list[dict]:
    template = document.get("spec", {}).get("template", {})
    return template.get("spec", {}).get("containers", [])


def check_pass_through_options(subcommand: str, options: list[str]) -> None:
    """`segq worker` and `segq flower` hand their options to Celery and Flower: check names."""
    if subcommand == "worker":
        known = {opt for param in celery_worker.params for opt in param.opts}
        names = [arg.partition("=")[0] for arg in options if arg.startswith("-")]
        assert set(names) <= known, f"not options of celery worker: {set(names) - known}"
    elif subcommand == "flower":
        kinds = flower_option_kinds()
        normalized = normalize_options([arg for arg in options if arg != "--no-auth"], kinds)
        names = {arg.partition("=")[0].lstrip("-").replace("-", "_") for arg in normalized}
        assert names <= set(kinds), f"not options of Flower: {names - set(kinds)}"


@pytest.mark.parametrize(("where", "argv"), segq_invocations(), ids=lambda v: str(v))
def test_every_segq_command_in_deploy_files_exists_with_those_options(where, argv):
    subcommand, *options = argv
    assert subcommand in segq_cli.commands, f"{where}: segq has no command {subcommand!r}"
    command = segq_cli.commands[subcommand]
    try:
        command.make_context(subcommand, list(options), resilient_parsing=False)
    except click.ClickException as exc:
        pytest.fail(f"{where}: segq {' '.join(argv)}: {exc.format_message()}")
    check_pass_through_options(subcommand, options)


def deploy_texts() -> dict[str, str]:
    files = [p for p in DEPLOY.rglob("*") if p.is_file() and p.name != ".gitignore"]
    return {str(p.relative_to(DEPLOY)): p.read_text() for p in files}


def test_every_setting_named_in_deploy_files_is_a_segq_setting():
    known = set(setting_env_names())
    for name, text in deploy_texts().items():
        named = set(re.findall(r"\b(?:SEGQ|SEGMIND)_[A-Z0-9_]*[A-Z0-9]\b", text))
        assert named <= known, f"{name}: not settings: {sorted(named - known)}"


def test_celery_app_and_modules_named_in_deploy_files_exist():
    for name, text in deploy_texts().items():
        for module in re.findall(r"(?:-A|--app)[ =]([\w.]+)|python -m ([\w.]+)", text):
            path = next(part for part in module if part)
            assert __import__(path), f"{name}: no module {path}"


def test_the_celery_app_segq_flower_runs_is_workers_app():
    import workers

    assert workers.app.main == "segq"


# -- Dockerfile -------------------------------------------------------------------------------


def test_dockerfile_runs_segq_as_pid_1_as_a_non_root_user_with_a_healthcheck():
    instructions = dockerfile_instructions()
    keywords = [keyword for keyword, _ in instructions]
    final_stage = instructions[max(i for i, (k, _) in enumerate(instructions) if k == "FROM") :]
    values = dict(final_stage)
    assert values["FROM"] == "python:3.11-slim"
    assert re.fullmatch(r"\d+(:\d+)?", values["USER"]) and not values["USER"].startswith("0")
    assert json.loads(values["ENTRYPOINT"]) == ["segq"], "exec form keeps segq as PID 1"
    assert json.loads(values["CMD"]) == ["worker"]
    assert values["STOPSIGNAL"] == "SIGTERM"
    assert "HEALTHCHECK" in values
    assert keywords.index("USER") > keywords.index("RUN")


def test_dockerfile_copies_only_what_exists_and_bakes_in_no_secret():
    for keyword, arguments in dockerfile_instructions():
        if keyword == "COPY" and not arguments.startswith("--from"):
            *sources, _ = arguments.split()
            for source in sources:
                assert (REPO / source).exists(), f"COPY {source}: not in the repository"
        if keyword in ("ENV", "ARG"):
            assert not re.search(r"KEY|SECRET|PASSWORD|AUTH|TOKEN", arguments), arguments


def test_docker_build_context_sends_only_what_the_image_copies():
    lines = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = {
        source.rstrip("/")
        for keyword, arguments in dockerfile_instructions()
        if keyword == "COPY" and not arguments.startswith("--from")
        for source in arguments.split()[:-1]
    }
    assert "*" in lines, "everything else (local env files with secrets) stays out"
    assert allowed == copied


# -- compose ----------------------------------------------------------------------------------


def test_compose_publishes_ports_on_loopback_only():
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port}"


def test_flower_takes_basic_auth_from_its_env_file_and_never_sees_the_api_key():
    flower = compose()["services"]["flower"]
    assert flower["env_file"] == ["flower.env"]
    (pod,) = [d for d in k8s_by_kind("Deployment") if d["metadata"]["name"] == "segq-flower"]
    names = {e["name"] for e in pod["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "SEGQ_FLOWER_BASIC_AUTH" in names and "SEGMIND_API_KEY" not in names
    assert "SEGQ_FLOWER_BASIC_AUTH=" in (DEPLOY / "flower.env.example").read_text()
    assert "--no-auth" not in json.dumps(compose())


def test_compose_has_sandbox_and_rabbitmq_profiles_and_the_broker_is_switchable():
    services = compose()["services"]
    assert services["sandbox"]["profiles"] == ["sandbox"]
    assert services["rabbitmq"]["profiles"] == ["rabbitmq"]
    for name in ("worker", "flower"):
        assert services[name]["environment"]["SEGQ_BROKER_URL"].startswith("${SEGQ_BROKER_URL:-")
        assert services[name]["depends_on"]["rabbitmq"]["required"] is False
    assert "SEGQ_BROKER_URL=amqp://" in (DEPLOY / "compose.yaml").read_text()


def test_rabbitmq_env_file_starts_the_profile_and_points_the_workers_at_it():
    lines = (DEPLOY / "rabbitmq.env.example").read_text().splitlines()
    env = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    assert env["COMPOSE_PROFILES"] == "rabbitmq"
    url = urlsplit(env["SEGQ_BROKER_URL"])
    service = compose()["services"]["rabbitmq"]["environment"]
    assert (url.scheme, url.hostname, url.port) == ("amqp", "rabbitmq", 5672)
    assert url.username == service["RABBITMQ_DEFAULT_USER"]
    assert url.password == env["RABBITMQ_PASSWORD"]
    assert url.path == "/" + service["RABBITMQ_DEFAULT_VHOST"]
    assert "rabbitmq.env" in (DEPLOY / ".gitignore").read_text().split()


def test_compose_worker_shuts_down_gracefully():
    worker = compose()["services"]["worker"]
    assert worker["stop_signal"] == "SIGTERM"
    assert grace_s(worker["stop_grace_period"]) >= 3 * Settings().http_timeout_s


def grace_s(duration: str) -> float:
    return float(duration.removesuffix("s"))


# -- Kubernetes -------------------------------------------------------------------------------


def k8s_by_kind(kind: str) -> list[dict]:
    return [doc for _, doc in k8s_documents() if doc["kind"] == kind]


def test_worker_deployment_has_probes_and_a_grace_period_for_warm_shutdown():
    (worker,) = [d for d in k8s_by_kind("Deployment") if d["metadata"]["name"] == "segq-worker"]
    pod = worker["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] >= 3 * Settings().http_timeout_s
    (container,) = pod["containers"]
    assert probe_commands(container) == {
        "startupProbe": ["segq", "health"],
        "readinessProbe": ["segq", "health", "--ready"],
        "livenessProbe": ["segq", "health"],
    }
    assert all(container[p]["timeoutSeconds"] >= 5 for p in probe_commands(container))
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_the_health_file_is_where_the_worker_may_write():
    """The default SEGQ_HEALTH_FILE is in /tmp, which the read-only pod mounts writable."""
    (worker,) = [d for d in k8s_by_kind("Deployment") if d["metadata"]["name"] == "segq-worker"]
    (container,) = worker["spec"]["template"]["spec"]["containers"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert str(Settings().health_file.parent) in mounts
    assert healthcheck_command() == ["segq", "health", "--ready"]
    unit = unit_entries(DEPLOY / "systemd" / "segq-worker@.service")
    runtime_dir = unit_value(unit, "Service", "RuntimeDirectory")
    assert unit_value(unit, "Service", "Environment") == (
        f"SEGQ_HEALTH_FILE=/run/{runtime_dir}/health.json"
    )


def test_flower_and_metrics_services_are_cluster_internal():
    services = k8s_by_kind("Service")
    assert {s["metadata"]["name"] for s in services} >= {"segq-flower", "segq-metrics"}
    for service in services:
        assert service["spec"]["type"] == "ClusterIP"


def test_keda_scales_the_worker_deployment_on_the_broker_queues():
    (scaled,) = k8s_by_kind("ScaledObject")
    (auth,) = k8s_by_kind("TriggerAuthentication")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    assert spec["scaleTargetRef"]["name"] == "segq-worker"
    assert spec["minReplicaCount"] >= 1, "the dispatcher lives in workers: never scale to 0"
    assert spec["maxReplicaCount"] > spec["minReplicaCount"]
    worker_env = {
        e["name"]: e.get("value")
        for e in k8s_by_kind("Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    broker_db = worker_env["SEGQ_BROKER_URL"].rsplit("/", 1)[1]
    lists = set()
    for trigger in spec["triggers"]:
        metadata = trigger["metadata"]
        assert trigger["type"] == "redis"
        assert all(isinstance(value, str) for value in metadata.values()), "KEDA wants strings"
        assert set(metadata) <= {"address", "databaseIndex", "listName", "listLength",
                                 "activationListLength", "enableTLS", "unsafeSsl"}  # fmt: skip
        assert metadata["databaseIndex"] == broker_db
        assert int(metadata["listLength"]) > 0
        assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
        lists.add(metadata["listName"])
    assert lists == {SUBMIT_QUEUE, POLL_QUEUE}
    assert {ref["parameter"] for ref in auth["spec"]["secretTargetRef"]} == {"password"}


# -- systemd ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", UNITS, ids=lambda p: p.name)
def test_systemd_unit_parses_and_stops_gracefully(path):
    unit = unit_entries(path)
    assert {"Unit", "Service", "Install"} <= set(unit.sections())
    assert unit_value(unit, "Service", "KillSignal") == "SIGTERM"
    assert int(unit_value(unit, "Service", "TimeoutStopSec") or 0) > 0
    assert unit_value(unit, "Service", "User") == "segq"
    assert unit_value(unit, "Service", "Restart") == "on-failure"


def test_systemd_worker_waits_for_running_tasks_and_signals_the_main_process_only():
    unit = unit_entries(DEPLOY / "systemd" / "segq-worker@.service")
    assert unit_value(unit, "Service", "KillMode") == "mixed"
    assert int(unit_value(unit, "Service", "TimeoutStopSec") or 0) >= 3 * Settings().http_timeout_s


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_finds_nothing_wrong_in_the_units(tmp_path):
    for path in UNITS:
        text = path.read_text().replace("/opt/segq/venv/bin/segq", sys.executable)
        (tmp_path / path.name).write_text(text)
    files = [str(tmp_path / path.name) for path in UNITS]
    result = subprocess.run(
        ["systemd-analyze", "verify", *files], capture_output=True, text=True, timeout=60
    )
    assert result.stderr.strip() == "" and result.returncode == 0, result.stderr
