#!/usr/bin/env bash
# Rehearse a Render deploy of render.yaml on this machine: in a fresh copy of the tracked files
# and a fresh virtualenv, run each service's buildCommand, the web's preDeployCommand on a new
# database, the web and worker startCommands and the cron job's command, exactly as written in
# the Blueprint and with the environment it declares, over the one Render gives Python services
# (GUNICORN_CMD_ARGS with --preload, WEB_CONCURRENCY). Then check the health check path and a
# full register -> login -> forgot -> email -> reset round trip through the worker.
#
# Render's managed pieces are played by local ones: PostgreSQL and Redis on 127.0.0.1, generated
# secrets from /dev/urandom, and the ESP by a local SMTP sink (its HTTP API would leave the
# machine) - that email transport is the only setting that differs from the Blueprint.
#
# Settings, all optional:
#   REHEARSAL_DATABASE_URL  default postgres://postgres@127.0.0.1:5432/auth_rehearsal (recreated)
#   REHEARSAL_REDIS_URL     default redis://127.0.0.1:6379/8 (emptied first: FLUSHDB of that database)
#   REHEARSAL_PORT          default 8170 (the next free port if taken); SMTP sink on the one after
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

export DATABASE_URL="${REHEARSAL_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/auth_rehearsal}"
export REDIS_URL="${REHEARSAL_REDIS_URL:-redis://127.0.0.1:6379/8}"
WORK="$(mktemp -d /tmp/auth-rehearsal.XXXXXX)"
PIDS=()

fail() { printf '\033[1;31mRender rehearsal FAILED: %s\033[0m\n' "$*" >&2; exit 1; }

cleanup() {
  local status=$? pid
  if [ "$status" -ne 0 ]; then
    for log in "$WORK"/web.log "$WORK"/worker.log; do
      [ -f "$log" ] && { echo "---- last lines of $(basename "$log") ----" >&2; tail -n 30 "$log" >&2; }
    done
  fi
  # Each process was started in a session of its own: stop the whole group, then wait for it.
  for pid in "${PIDS[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  local port="$1"
  while port_open 127.0.0.1 "$port"; do port=$((port + 1)); done
  echo "$port"
}

ensure_venv "$ROOT/requirements-dev.txt"
ensure_postgres
ensure_redis

say "a new, empty database: $(url_host "$DATABASE_URL")/${DATABASE_URL##*/}"
"$PY" - <<'PY'
import os
import psycopg2
from psycopg2 import sql
from psycopg2.extensions import parse_dsn
url = os.environ["DATABASE_URL"]
name = parse_dsn(url)["dbname"]
# The maintenance database through the same URL (as ensure_database in lib.sh reaches it).
conn = psycopg2.connect(url, dbname="postgres")
conn.autocommit = True
with conn.cursor() as cur:
    cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
conn.close()
PY

say "an empty Redis database: ${REDIS_URL##*/}"
flush_redis_database

PORT="$(free_port "${REHEARSAL_PORT:-8170}")"
SMTP_PORT="$(free_port $((PORT + 1)))"
PUBLIC_URL="http://127.0.0.1:$PORT"

# The Blueprint, read once: each service's commands and its environment resolved the way Render
# would resolve it, into one env file per service.
"$PY" - "$WORK" "$PORT" "$SMTP_PORT" <<'PY' || fail "render.yaml could not be read"
import json, os, secrets, shlex, sys
import yaml

work, port, smtp_port = sys.argv[1], sys.argv[2], sys.argv[3]
blueprint = yaml.safe_load(open("render.yaml"))
groups = {g["name"]: g["envVars"] for g in blueprint.get("envVarGroups", [])}
generated = {}  # one value per generated variable, as Render does for a shared group
public_url = f"http://127.0.0.1:{port}"
prompted = {  # what the operator types into the Dashboard for `sync: false`
    "PUBLIC_URL": public_url,
    "DEFAULT_FROM_EMAIL": "auth_service <no-reply@example.com>",
}
email = {  # the ESP's API leaves the machine: a local SMTP sink stands in for it
    "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
    "EMAIL_HOST": "127.0.0.1",
    "EMAIL_PORT": smtp_port,
    "EMAIL_USE_TLS": "false",
}
services = {s["name"]: s for s in blueprint["services"]}
# What Render itself sets for its native Python runtime, which the Blueprint's values override
# (render.com/docs/environment-variables). gunicorn applies GUNICORN_CMD_ARGS over
# gunicorn.conf.py; Render's port is 10000, the rehearsal's its own.
python_runtime = {
    "GUNICORN_CMD_ARGS": f"--preload --access-logfile - --bind=0.0.0.0:{port}",
    "FORWARDED_ALLOW_IPS": "*",
}
# Render's WEB_CONCURRENCY for a web service, from its instance type's CPUs.
web_concurrency = {"starter": "1", "standard": "1", "pro": "2"}

def entries(service):
    for entry in service.get("envVars", []):
        if "fromGroup" in entry:
            yield from groups[entry["fromGroup"]]
        else:
            yield entry

def resolve(service, entry):
    key = entry["key"]
    if "value" in entry:
        return str(entry["value"])
    if entry.get("generateValue"):
        return generated.setdefault(key, secrets.token_urlsafe(32))
    if entry.get("sync") is False:
        return prompted.get(key, "")
    if "fromDatabase" in entry:
        return os.environ["DATABASE_URL"]
    source = entry["fromService"]
    if source["type"] == "keyvalue":
        return os.environ["REDIS_URL"]
    other = services[source["name"]]
    (match,) = [e for e in entries(other) if e.get("key") == source["envVarKey"]]
    return resolve(other, match)

commands = {}
for service in blueprint["services"]:
    if service["type"] not in ("web", "worker", "cron"):
        continue
    env = dict(python_runtime)
    if service["type"] == "web":
        env["WEB_CONCURRENCY"] = web_concurrency.get(service.get("plan", "starter"), "1")
    env.update({e["key"]: resolve(service, e) for e in entries(service)})
    if service["type"] == "web":
        # Set by Render on web services.
        env.update(PORT=port, RENDER_EXTERNAL_HOSTNAME="127.0.0.1", RENDER_EXTERNAL_URL=public_url)
    env.update(email, RENDER="true")
    with open(f"{work}/{service['type']}.env", "w") as out:
        out.writelines(f"{k}={shlex.quote(v)}\n" for k, v in env.items())
    commands[service["type"]] = {
        k: service.get(k, "") for k in ("buildCommand", "preDeployCommand", "startCommand")
    }
    commands[service["type"]]["healthCheckPath"] = service.get("healthCheckPath", "")
json.dump(commands, open(f"{work}/commands.json", "w"))
PY
command_of() { "$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]][sys.argv[3]])' "$WORK/commands.json" "$1" "$2"; }

# Run a Blueprint command as Render would: in the checkout, with the fresh virtualenv first on
# PATH and only the service's declared environment.
in_service() {
  local service="$1" command="$2"
  env -i HOME="$HOME" LANG=C.UTF-8 PATH="$WORK/venv/bin:/usr/local/bin:/usr/bin:/bin" \
    bash -c "set -a; source '$WORK/$service.env'; set +a; cd '$WORK/src'; $command"
}

say "a fresh checkout and virtualenv"
mkdir -p "$WORK/src"
git ls-files -z | tar --null -T - -cf - | tar -C "$WORK/src" -xf -
python="$(command -v python3.11 || command -v python3)"
"$python" -m venv "$WORK/venv" || fail "could not create a virtualenv"

for service in web worker cron; do
  build="$(command_of "$service" buildCommand)"
  say "$service buildCommand: $build"
  in_service "$service" "$build" >"$WORK/build-$service.log" 2>&1 \
    || { tail -n 30 "$WORK/build-$service.log" >&2; fail "the $service buildCommand failed"; }
done

predeploy="$(command_of web preDeployCommand)"
say "web preDeployCommand: $predeploy"
in_service web "$predeploy" >"$WORK/predeploy.log" 2>&1 \
  || { tail -n 30 "$WORK/predeploy.log" >&2; fail "the preDeployCommand failed"; }

say "SMTP sink on 127.0.0.1:$SMTP_PORT"
setsid "$PY" -m aiosmtpd --nosetuid --listen "127.0.0.1:$SMTP_PORT" \
  --class aiosmtpd.handlers.Mailbox "$WORK/maildir" >"$WORK/smtp.log" 2>&1 &
PIDS+=($!)
wait_port 127.0.0.1 "$SMTP_PORT" "the SMTP sink"

for service in web worker; do
  start="$(command_of "$service" startCommand)"
  say "$service startCommand: $start"
  setsid bash -c "$(declare -f in_service); WORK='$WORK'; in_service $service '$start'" \
    >"$WORK/$service.log" 2>&1 &
  PIDS+=($!)
done

cron="$(command_of cron startCommand)"
say "cron job: $cron"
in_service cron "$cron" >"$WORK/cron.log" 2>&1 \
  || { tail -n 30 "$WORK/cron.log" >&2; fail "the cron job's command failed"; }

health="$(command_of web healthCheckPath)"
"$PY" scripts/smoke.py --base-url "$PUBLIC_URL" --static --maildir "$WORK/maildir" \
  --public-url "$PUBLIC_URL" || fail "the rehearsed deployment did not behave (see above)"
"$PY" - "$PUBLIC_URL$health" <<'PY' || fail "the health check path $health did not answer 200"
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=5) as response:  # noqa: S310
    sys.exit(0 if response.status == 200 else 1)
PY
say "health check path $health answers 200"
say "Render rehearsal passed"
