"""The deployment files agree with each other and with the settings.

The Procfile is the reference: the Dockerfile, docker-compose.yml and render.yaml must run the
same release, web and worker commands, and render.yaml must give every process the environment
the settings need to start.
"""

import base64
import gc
import json
import os
import re
import runpy
import secrets
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

RENDER_SERVICE_TYPES = {"web", "worker", "pserv", "cron", "keyvalue"}
REQUIRED_KEYS = {
    "web": {"name", "runtime", "buildCommand", "startCommand", "healthCheckPath"},
    "worker": {"name", "runtime", "buildCommand", "startCommand"},
    "cron": {"name", "runtime", "buildCommand", "startCommand", "schedule"},
    "keyvalue": {"name", "plan", "ipAllowList", "maxmemoryPolicy"},
}
# What the worker needs beyond the settings' own requirements, to send a reset email.
WORKER_EMAIL_ENV = {
    "PUBLIC_URL",
    "DEFAULT_FROM_EMAIL",
    "EMAIL_BACKEND",
    "ANYMAIL_POSTMARK_SERVER_TOKEN",
}
SECRETS = {"SECRET_KEY", "JWT_SIGNING_KEY", "ANYMAIL_POSTMARK_SERVER_TOKEN"}

# Render's Blueprint specification (render.com/docs/blueprint-spec): the fields each resource
# takes and the values they allow. Pre-deploy commands need a paid instance type
# (render.com/blog/build-pipelines); worker, cron and private services have no free one.
SERVICE_FIELDS = {
    "type", "name", "runtime", "plan", "previews", "region", "repo", "branch", "rootDir",
    "buildCommand", "startCommand", "preDeployCommand", "autoDeploy", "autoDeployTrigger",
    "envVars", "numInstances", "scaling", "buildFilter", "disk", "dockerCommand",
    "dockerfilePath", "dockerContext", "registryCredential", "image",
}  # fmt: skip
FIELDS_OF_TYPE = {
    "web": SERVICE_FIELDS
    | {"healthCheckPath", "maxShutdownDelaySeconds", "domains", "ipAllowList"}
    | {"staticPublishPath", "headers", "routes"},
    "pserv": SERVICE_FIELDS | {"maxShutdownDelaySeconds"},
    "worker": SERVICE_FIELDS | {"maxShutdownDelaySeconds"},
    "cron": SERVICE_FIELDS | {"schedule"},
    "keyvalue": {"type", "name", "plan", "previewPlan", "region", "ipAllowList", "maxmemoryPolicy"},
}
DATABASE_FIELDS = {
    "name", "plan", "previewPlan", "diskSizeGB", "storageAutoscalingEnabled", "previewDiskSizeGB",
    "region", "ipAllowList", "postgresMajorVersion", "databaseName", "user", "readReplicas",
    "highAvailability",
}  # fmt: skip
SERVICE_PLANS = {"free", "starter", "standard", "pro", "pro plus", "pro max", "pro ultra"}
DATABASE_PLAN = re.compile(r"free|basic-256mb|basic-\d+gb|pro-\d+gb|accelerated-\d+gb")
REGIONS = {"oregon", "ohio", "virginia", "frankfurt", "singapore"}
MAXMEMORY_POLICIES = {
    "allkeys-lru", "volatile-lru", "allkeys-random", "volatile-random", "volatile-ttl", "noeviction"
}  # fmt: skip
# What `fromService: {property: ...}` can read from each type of service, and fromDatabase.
SERVICE_PROPERTIES = {
    "web": {"host", "port", "hostport"},
    "pserv": {"host", "port", "hostport"},
    "keyvalue": {"connectionString", "host", "port"},
}
DATABASE_PROPERTIES = {"connectionString", "host", "port", "user", "password", "database"}
ENV_SOURCES = {"value", "generateValue", "sync", "fromDatabase", "fromService", "fromGroup"}

# What Render sets on a service of its native Python runtime, under the Blueprint's values
# (render.com/docs/environment-variables): gunicorn applies GUNICORN_CMD_ARGS over
# gunicorn.conf.py, and a web service's WEB_CONCURRENCY follows its CPUs (1 on Starter).
RENDER_PYTHON_WEB_ENV = {
    "PORT": "10000",
    "GUNICORN_CMD_ARGS": "--preload --access-logfile - --bind=0.0.0.0:10000",
    "FORWARDED_ALLOW_IPS": "*",
    "WEB_CONCURRENCY": "1",
}


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip())


def blueprint() -> dict:
    return yaml.safe_load((ROOT / "render.yaml").read_text())


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def render_service(service_type: str) -> dict:
    (service,) = [s for s in blueprint()["services"] if s["type"] == service_type]
    return service


def render_env(service: dict) -> dict[str, dict]:
    """Every variable a Render service gets, its own and its groups', by name."""
    groups = {group["name"]: group["envVars"] for group in blueprint().get("envVarGroups", [])}
    env = {}
    for entry in service.get("envVars", []):
        if "fromGroup" in entry:
            env.update({var["key"]: var for var in groups[entry["fromGroup"]]})
        else:
            env[entry["key"]] = entry
    return env


def stand_in_value(name: str, source: dict) -> str:
    """A value of the right shape for what Render would put in the variable."""
    if "value" in source:
        return str(source["value"])
    if "fromDatabase" in source:
        return "postgres://auth_service:pw@dpg-example-a:5432/auth_service"
    if source.get("fromService", {}).get("type") == "keyvalue":
        return "redis://red-example:6379"
    if source.get("generateValue"):
        return base64.b64encode(secrets.token_bytes(32)).decode()  # Render: 256 bits, base64
    shapes = {"PUBLIC_URL": "https://auth-service.onrender.com", "DEFAULT_FROM_EMAIL": "a@b.co"}
    return shapes.get(name, "prompted-value")


def run_with_blueprint_env(service: dict, *command: str) -> subprocess.CompletedProcess:
    env = {name: stand_in_value(name, src) for name, src in render_env(service).items()}
    if service["type"] == "web":
        # Render adds these to web services (and only to them).
        env["RENDER_EXTERNAL_HOSTNAME"] = "auth-service.onrender.com"
        env["RENDER_EXTERNAL_URL"] = "https://auth-service.onrender.com"
    env["PATH"] = os.environ["PATH"]
    return subprocess.run(  # noqa: S603
        [sys.executable, *command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


# --- one set of commands --------------------------------------------------------------------


def test_procfile_declares_release_web_and_worker():
    assert procfile() == {
        "release": "python manage.py migrate --noinput",
        "web": "gunicorn --config gunicorn.conf.py auth_service.wsgi",
        "worker": "celery -A auth_service worker --loglevel INFO",
    }


def test_the_image_serves_the_procfile_web_command_by_default():
    dockerfile = (ROOT / "Dockerfile").read_text()
    cmd = re.search(r"^CMD (\[.*\])$", dockerfile, re.MULTILINE)

    assert shlex.join(json.loads(cmd.group(1))) == procfile()["web"]


def test_compose_runs_the_procfile_commands():
    services = compose()["services"]

    assert shlex.join(services["migrate"]["command"]) == procfile()["release"]
    assert shlex.join(services["web"]["command"]) == procfile()["web"]
    assert shlex.join(services["worker"]["command"]) == procfile()["worker"]


def test_render_runs_the_procfile_commands():
    assert render_service("web")["preDeployCommand"] == procfile()["release"]
    assert render_service("web")["startCommand"] == procfile()["web"]
    assert render_service("worker")["startCommand"] == procfile()["worker"]


# --- render.yaml ----------------------------------------------------------------------------


def test_blueprint_services_have_a_known_type_and_their_required_keys():
    for service in blueprint()["services"]:
        assert service["type"] in RENDER_SERVICE_TYPES, service["name"]
        missing = REQUIRED_KEYS.get(service["type"], set()) - service.keys()
        assert not missing, f"{service['name']} lacks {sorted(missing)}"
    (database,) = blueprint()["databases"]
    assert {"name", "plan"} <= database.keys()


def test_blueprint_uses_only_fields_and_values_render_documents():
    plan = blueprint()
    for service in plan["services"]:
        kind, name = service["type"], service["name"]
        unknown = service.keys() - FIELDS_OF_TYPE[kind]
        assert not unknown, f"{name}: {sorted(unknown)} not fields of a {kind} service"
        assert service.get("plan", "starter") in SERVICE_PLANS, name
        assert service.get("region", "oregon") in REGIONS, name
        if kind in {"worker", "cron", "pserv"}:
            assert service.get("plan") != "free", f"{name}: no free {kind} instances"
        if "preDeployCommand" in service:
            assert kind in {"web", "pserv", "worker"}, name
            assert service.get("plan", "starter") != "free", f"{name}: pre-deploy needs paid"
        if "maxShutdownDelaySeconds" in service:
            assert service["maxShutdownDelaySeconds"] in range(1, 301), name
        if kind == "keyvalue":
            assert "ipAllowList" in service, f"{name}: Key Value requires ipAllowList"
            assert service.get("maxmemoryPolicy", "allkeys-lru") in MAXMEMORY_POLICIES, name
        for entry in service.get("envVars", []):
            assert len(entry.keys() & ENV_SOURCES) == 1, f"{name}: {entry}"
            if "fromService" in entry:
                source = entry["fromService"]
                assert source.keys() in (
                    {"type", "name", "property"},
                    {"type", "name", "envVarKey"},
                )
                if "property" in source:
                    assert source["property"] in SERVICE_PROPERTIES[source["type"]], entry
            if "fromDatabase" in entry:
                assert entry["fromDatabase"]["property"] in DATABASE_PROPERTIES, entry
    for group in plan.get("envVarGroups", []):
        assert group.keys() == {"name", "envVars"}
        for entry in group["envVars"]:
            # A group can hold no prompted value and no reference (Render ignores or refuses them).
            assert entry.keys() <= {"key", "value", "generateValue"}, f"{group['name']}: {entry}"
    for database in plan["databases"]:
        assert database.keys() <= DATABASE_FIELDS, sorted(database.keys() - DATABASE_FIELDS)
        assert DATABASE_PLAN.fullmatch(database.get("plan", "basic-256mb")), database["name"]
        assert database.get("region", "oregon") in REGIONS
        assert isinstance(database.get("postgresMajorVersion", ""), str)  # a string, as "17"


def test_key_value_is_a_private_broker_that_never_evicts():
    key_value = render_service("keyvalue")

    assert key_value["ipAllowList"] == []
    assert key_value["maxmemoryPolicy"] == "noeviction"


def test_the_database_takes_no_connections_from_the_internet():
    (database,) = yaml.safe_load((ROOT / "render.yaml").read_text())["databases"]

    assert database["ipAllowList"] == []


def test_blueprint_references_resolve():
    plan = blueprint()
    names = {(s["type"], s["name"]) for s in plan["services"]}
    databases = {d["name"] for d in plan["databases"]}
    groups = {g["name"] for g in plan["envVarGroups"]}
    for service in plan["services"]:
        for entry in service.get("envVars", []):
            if "fromGroup" in entry:
                assert entry["fromGroup"] in groups
            if "fromDatabase" in entry:
                assert entry["fromDatabase"]["name"] in databases
            if "fromService" in entry:
                source = entry["fromService"]
                assert (source["type"], source["name"]) in names
                if "envVarKey" in source:
                    other = render_service(source["type"])
                    assert source["envVarKey"] in render_env(other)


def test_web_and_worker_share_generated_secrets_and_run_without_debug():
    for service_type in ("web", "worker"):
        env = render_env(render_service(service_type))
        assert env["DEBUG"]["value"] == "false"
        assert env["SECRET_KEY"].get("generateValue") is True
        assert env["JWT_SIGNING_KEY"].get("generateValue") is True
        assert env["DATABASE_URL"]["fromDatabase"]["property"] == "connectionString"
        assert env["REDIS_URL"]["fromService"] == {
            "type": "keyvalue",
            "name": render_service("keyvalue")["name"],
            "property": "connectionString",
        }
    # Generated in one group both attach to, so both get the same values.
    web_groups = {e["fromGroup"] for e in render_service("web")["envVars"] if "fromGroup" in e}
    worker_groups = {
        e["fromGroup"] for e in render_service("worker")["envVars"] if "fromGroup" in e
    }
    assert web_groups & worker_groups


def test_no_secret_is_committed_in_the_blueprint():
    for service in blueprint()["services"]:
        for name, source in render_env(service).items():
            if name in SECRETS:
                assert "value" not in source, f"{service['name']} commits {name}"
            if name == "ANYMAIL_POSTMARK_SERVER_TOKEN" and "fromService" not in source:
                assert source.get("sync") is False


def test_the_worker_gets_what_it_needs_to_email_a_reset_link():
    env = render_env(render_service("worker"))

    assert env.keys() >= WORKER_EMAIL_ENV


@pytest.mark.parametrize("service_type", ["web", "worker", "cron"])
def test_settings_load_with_exactly_the_blueprint_environment(service_type):
    result = run_with_blueprint_env(
        render_service(service_type), "manage.py", "check", "--fail-level", "WARNING"
    )

    assert result.returncode == 0, result.stderr[-2000:]


def test_the_web_environment_passes_the_deployment_checklist():
    result = run_with_blueprint_env(render_service("web"), "manage.py", "check", "--deploy")

    assert result.returncode == 0, result.stderr[-2000:]
    issues = set(re.findall(r"\(([a-z_]+\.[A-Z]\d+)\)", result.stdout + result.stderr))
    # The one exception: Render generates 256-bit secrets as 44 base64 characters and Django's
    # length heuristic asks for 50. More entropy than Django's own generated keys, so accepted
    # (README, "Deploy to Render"); anything else in the checklist fails here.
    assert issues <= {"security.W009"}, result.stdout + result.stderr


@pytest.mark.django_db
def test_the_health_check_path_answers(client):
    response = client.get(render_service("web")["healthCheckPath"])

    assert response.status_code == 200


# --- Dockerfile and compose -----------------------------------------------------------------


def test_dockerfile_is_hadolint_clean_at_warning_level():
    result = subprocess.run(  # noqa: S603
        [BIN / "hadolint", "--failure-threshold", "warning", "Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_file_follows_the_compose_spec():
    result = subprocess.run(  # noqa: S603
        [BIN / "check-jsonschema", "--builtin-schema", "vendor.compose-spec", "docker-compose.yml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_starts_web_and_worker_after_migrations_and_healthy_dependencies():
    services = compose()["services"]

    for name in ("web", "worker"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["redis"]["condition"] == "service_healthy"
    assert services["migrate"]["depends_on"]["db"]["condition"] == "service_healthy"
    for name in ("db", "redis", "mailpit", "worker"):
        assert services[name]["healthcheck"]["test"], name
    assert "pgdata" in compose()["volumes"]


def test_compose_calls_the_database_healthy_once_it_answers_over_tcp():
    # The first start of a new volume runs a temporary server on the Unix socket only.
    check = shlex.split(compose()["services"]["db"]["healthcheck"]["test"][1])

    assert check[0] == "pg_isready"
    assert check[check.index("-h") + 1] == "127.0.0.1"


def test_compose_sends_email_to_mailpit():
    services = compose()["services"]

    assert "8025:8025" in services["mailpit"]["ports"][0].replace("${MAILPIT_PORT:-8025}", "8025")
    worker_env = services["worker"]["environment"]
    assert worker_env["EMAIL_HOST"] == "mailpit"
    assert worker_env["EMAIL_PORT"] == "1025"


def seconds(duration: str) -> int:
    """A compose duration such as `1m30s` in seconds."""
    parts = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", duration)
    return int(parts.group(1) or 0) * 60 + int(parts.group(2) or 0)


def test_compose_lets_the_web_container_drain_its_requests_on_stop():
    # Compose sends SIGKILL 10 s after SIGTERM unless stop_grace_period says otherwise.
    grace = seconds(compose()["services"]["web"].get("stop_grace_period", "10s"))

    assert grace > int(gunicorn_config()["graceful_timeout"])


def test_the_image_names_its_debian_release_and_runs_the_python_render_runs():
    bases = set(re.findall(r"^FROM (\S+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE))
    python_version = render_env(render_service("web"))["PYTHON_VERSION"]["value"]

    # A bare `-slim` tag moves to each new Debian release.
    (base,) = bases
    image = re.fullmatch(r"python:(3\.\d+)-slim-([a-z]+)", base)
    assert image, base
    assert python_version.startswith(f"{image.group(1)}.")


# --- gunicorn.conf.py -----------------------------------------------------------------------


def gunicorn_config(**env: str) -> dict[str, str]:
    """The settings gunicorn would run with, given these server variables and no others."""
    server_knobs = ("PORT", "WEB_CONCURRENCY", "GUNICORN_")
    base = {k: v for k, v in os.environ.items() if not k.startswith(server_knobs)}
    result = subprocess.run(  # noqa: S603
        [BIN / "gunicorn", "--config", "gunicorn.conf.py", "--print-config", "auth_service.wsgi"],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    pairs = (line.split("=", 1) for line in result.stdout.splitlines() if " = " in line)
    return {name.strip(): value.strip() for name, value in pairs}


def test_gunicorn_listens_on_port_8000_with_two_threaded_workers_by_default():
    config = gunicorn_config()

    assert config["bind"] == "['0.0.0.0:8000']"
    assert (config["workers"], config["worker_class"], config["threads"]) == ("2", "gthread", "16")
    assert config["control_socket_disable"] == "True"
    assert config["accesslog"] == "-"


def test_gunicorn_takes_port_and_concurrency_from_the_environment():
    config = gunicorn_config(
        PORT="10000", WEB_CONCURRENCY="4", GUNICORN_WORKER_CLASS="sync", GUNICORN_THREADS="1"
    )

    assert config["bind"] == "['0.0.0.0:10000']"
    assert (config["workers"], config["worker_class"], config["threads"]) == ("4", "sync", "1")


def test_gunicorn_on_render_runs_two_workers_on_the_port_render_routes_to():
    blueprint_env = render_env(render_service("web"))
    env = {name: stand_in_value(name, source) for name, source in blueprint_env.items()}

    config = gunicorn_config(**{**RENDER_PYTHON_WEB_ENV, **env})

    assert config["workers"] == "2"
    assert config["bind"] == f"['0.0.0.0:{RENDER_PYTHON_WEB_ENV['PORT']}']"


@pytest.mark.parametrize(
    "knob",
    ["WEB_CONCURRENCY", "GUNICORN_THREADS", "GUNICORN_TIMEOUT", "GUNICORN_KEEPALIVE", "PORT"],
)
def test_gunicorn_refuses_a_zero_count_or_timeout(knob):
    # 0 workers would be a master serving nothing; a 0 timeout or keep-alive turns them off; port
    # 0 binds a random one, where the platform's proxy and health check never reach
    result = subprocess.run(  # noqa: S603
        [BIN / "gunicorn", "--config", "gunicorn.conf.py", "--print-config", "auth_service.wsgi"],
        cwd=ROOT,
        env={**os.environ, knob: "0"},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode != 0
    assert f"{knob} must be at least 1, not 0." in result.stderr


class RecordingWorker:
    """What the start-up hooks use of a gunicorn worker: its log."""

    def __init__(self) -> None:
        self.warnings: list[str] = []
        self.log = self

    def warning(self, message: str) -> None:
        self.warnings.append(message)


@pytest.fixture
def uncollected_static_root(settings, tmp_path):
    """Production's storage of hashed names, over a folder collectstatic never filled."""
    settings.DEBUG = False
    settings.STATIC_ROOT = tmp_path
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
    }
    return tmp_path


def test_gunicorn_workers_warn_at_start_when_static_files_were_never_collected(
    uncollected_static_root,
):
    config = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    worker = RecordingWorker()

    config["_warn_if_static_files_uncollected"](worker)

    [warning] = worker.warnings
    assert str(uncollected_static_root) in warning
    assert "python manage.py collectstatic --noinput" in warning


def test_gunicorn_workers_start_quietly_once_static_files_are_collected(uncollected_static_root):
    (uncollected_static_root / "staticfiles.json").write_text('{"paths": {}, "version": "1.1"}')
    config = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    worker = RecordingWorker()

    config["_warn_if_static_files_uncollected"](worker)

    assert worker.warnings == []


def test_gunicorn_workers_need_no_collected_files_in_debug(uncollected_static_root, settings):
    settings.DEBUG = True  # Django links the unhashed names, found in the app folders
    config = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    worker = RecordingWorker()

    config["_warn_if_static_files_uncollected"](worker)

    assert worker.warnings == []


def test_gunicorn_workers_freeze_the_loaded_app_out_of_full_collections():
    config = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    try:
        config["post_worker_init"](worker=None)

        assert gc.get_freeze_count() > 1000
    finally:
        gc.unfreeze()
