# Shared set-up for scripts/run and scripts/test: the settings in .env, a virtualenv with the
# pinned packages, and PostgreSQL and Redis answering. Sourced, not run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"

# .env as docker compose reads it, not as bash code: KEY=value lines, # comments, a value in
# quotes taken as it stands. A value such as `auth_service <no-reply@example.com>` or a secret
# holding `$`, `&` or `(` is taken literally, never run. Every setting in it is exported and
# replaces the environment's value.
load_env_file() {
  local line key value quote
  while IFS= read -r line || [ -n "$line" ]; do
    line="${line%$'\r'}"
    line="${line#"${line%%[![:space:]]*}"}"
    case "$line" in '' | '#'*) continue ;; esac
    line="${line#export }"
    key="${line%%=*}"
    key="${key%"${key##*[![:space:]]}"}"
    value="${line#*=}"
    value="${value#"${value%%[![:space:]]*}"}"
    if [ "$key" = "$line" ] || ! [[ "$key" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]]; then continue; fi
    quote="${value:0:1}"
    if { [ "$quote" = "'" ] || [ "$quote" = '"' ]; } && [[ "${value:1}" == *"$quote"* ]]; then
      value="${value:1}"
      value="${value%%"$quote"*}"  # up to the closing quote; a comment may follow it
    else
      value="${value%%[[:space:]]#*}"
      value="${value%"${value##*[![:space:]]}"}"
    fi
    if [ "$quote" != "'" ] && [[ "$value" == *'$'* ]]; then
      # Here taken as written; docker compose would expand it as a variable.
      printf 'warning: .env: %s holds a $, which docker compose expands unless the value is in single quotes\n' "$key" >&2
    fi
    export "$key=$value"
  done <"$ROOT/.env"
}

# The value of setting $1 from the environment, else from .env (read as load_env_file reads it,
# nothing else taken from there), else $2.
env_setting() {
  local value="${!1:-}"
  if [ -z "$value" ] && [ -f "$ROOT/.env" ]; then
    value="$(unset "$1"; load_env_file; printf '%s' "${!1:-}")"
  fi
  printf '%s' "${value:-$2}"
}

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

ensure_venv() {
  local requirements="$1" stamp="$VENV/.installed-$(basename "$1")"
  if [ ! -x "$PY" ]; then
    local python
    python="$(command -v python3.11 || command -v python3 || true)"
    [ -n "$python" ] || die "Python 3.11 is missing: apt-get install python3 python3-venv"
    say "creating virtualenv in $VENV"
    "$python" -m venv "$VENV" || die "could not create a virtualenv: apt-get install python3-venv"
  fi
  # Reinstall only when the requirements change.
  local digest
  digest="$(cat "$ROOT"/requirements*.txt | sha256sum | cut -d' ' -f1)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$digest" ]; then
    say "installing $(basename "$requirements")"
    "$PY" -m pip install --quiet --disable-pip-version-check -r "$requirements"
    echo "$digest" >"$stamp"
  fi
}

# host and port of a URL such as postgres://user@host:5432/db or redis://host:6379/0
url_host() { "$PY" -c 'import sys, urllib.parse as u; print(u.urlsplit(sys.argv[1]).hostname or "127.0.0.1")' "$1"; }
url_port() { "$PY" -c 'import sys, urllib.parse as u; print(u.urlsplit(sys.argv[1]).port or sys.argv[2])' "$1" "$2"; }

port_open() { "$PY" - "$1" "$2" <<'PY'
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()
except OSError:
    sys.exit(1)
PY
}

wait_port() {
  local host="$1" port="$2" name="$3"
  for _ in $(seq 1 30); do port_open "$host" "$port" && return 0; sleep 1; done
  die "$name did not start on $host:$port"
}

ensure_postgres() {
  local host port
  host="$(url_host "$DATABASE_URL")"; port="$(url_port "$DATABASE_URL" 5432)"
  port_open "$host" "$port" && return 0
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    say "starting PostgreSQL"
    local version
    version="$(ls /etc/postgresql | sort -V | tail -n 1)"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null \
      || sudo -n pg_ctlcluster --skip-systemctl-redirect "$version" main start \
      || die "could not start PostgreSQL $version; start it by hand"
    wait_port "$host" "$port" PostgreSQL
  else
    die "PostgreSQL is not installed and $host:$port does not answer.
  Install it:  sudo apt-get install -y postgresql   (or point DATABASE_URL at a running server)"
  fi
}

ensure_redis() {
  local host port
  host="$(url_host "$REDIS_URL")"; port="$(url_port "$REDIS_URL" 6379)"
  port_open "$host" "$port" && return 0
  if command -v redis-server >/dev/null 2>&1; then
    say "starting Redis on $host:$port"
    redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
      --dir /tmp --logfile /tmp/auth_service-redis.log
    wait_port "$host" "$port" Redis
  else
    die "Redis is not installed and $host:$port does not answer.
  Install it:  sudo apt-get install -y redis-server   (or point REDIS_URL at a running server)"
  fi
}

# Create the database named in DATABASE_URL if it does not exist yet. The maintenance database
# `postgres` is reached through the same URL with only its dbname overridden (libpq lets a
# keyword win over the URL), so socket URLs such as postgres:///auth_service work too.
ensure_database() {
  "$PY" - <<'PY'
import os
import psycopg2
from psycopg2 import sql
from psycopg2.extensions import parse_dsn
url = os.environ["DATABASE_URL"]
try:
    name = parse_dsn(url).get("dbname")
    if not name:
        raise SystemExit(
            "DATABASE_URL names no database: end it with one, e.g. "
            "postgres://postgres@127.0.0.1:5432/auth_service"
        )
    conn = psycopg2.connect(url, dbname="postgres")
except psycopg2.Error as error:
    raise SystemExit(
        f"cannot connect to PostgreSQL as DATABASE_URL says: {str(error).strip()}\n"
        "README.md (Quick start) shows how to give the connection a password or a local role."
    ) from None
conn.autocommit = True
with conn.cursor() as cur:
    cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
    if cur.fetchone() is None:
        cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        print(f"created database {name}")
conn.close()
PY
}

# Empty the Redis database named in REDIS_URL (that database only, never the whole server):
# deploy checks start from a fresh broker, cache and rate-limit counters.
flush_redis_database() {
  "$PY" -c 'import os, redis; redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()'
}

ensure_browser() {
  command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 && return 0
  die "Chromium is missing; the reset page's browser tests need it.
  Install it:  sudo apt-get install -y chromium chromium-driver"
}
