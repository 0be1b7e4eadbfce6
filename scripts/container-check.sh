#!/usr/bin/env bash
# Build the project's Dockerfile with podman and prove the image works: migrations run in it, the
# web container answers /readyz and its HEALTHCHECK as the unprivileged user, and the worker
# container sends a password-reset email to a local SMTP sink (register -> forgot -> email -> reset).
#
# No registry is reachable, so the Dockerfile's `FROM python:3.X-slim-<suite>` is satisfied by a
# local stand-in: that Debian suite (debootstrap, minbase) with the machine's pyenv CPython of the
# same minor version under /usr/local, built once and reused.
#
# Needs root (podman, debootstrap) and PostgreSQL and Redis on 127.0.0.1. Settings, all optional:
#   CONTAINER_DATABASE_URL  default postgres://postgres@127.0.0.1:5432/auth_container
#   CONTAINER_REDIS_URL     default redis://127.0.0.1:6379/9 (emptied first: FLUSHDB of that database)
#   CONTAINER_PORT          default 8180 (the next free port if taken); SMTP sink on the one after
#   CONTAINER_REBUILD_BASE=1  rebuild the stand-in base image
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

export DATABASE_URL="${CONTAINER_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/auth_container}"
export REDIS_URL="${CONTAINER_REDIS_URL:-redis://127.0.0.1:6379/9}"
IMAGE="localhost/auth_service:check"
RUN_ID="$$"
WEB="auth-check-web-$RUN_ID"
WORKER="auth-check-worker-$RUN_ID"
WORK="$(mktemp -d /tmp/auth-container-check.XXXXXX)"
SINK_PID=""
# runc: the default crun fails on cgroups/rlimits here; the ulimits must fit the sandbox's.
RUN_FLAGS=(--runtime runc --network host --ulimit nofile=1024:1024 --ulimit nproc=1000:1000)

fail() { printf '\033[1;31mcontainer check FAILED: %s\033[0m\n' "$*" >&2; exit 1; }

cleanup() {
  local status=$?
  if [ "$status" -ne 0 ]; then
    for name in "$WEB" "$WORKER"; do
      if podman container exists "$name" 2>/dev/null; then
        echo "---- last log lines of $name ----" >&2
        podman logs --tail 40 "$name" >&2 2>&1 || true
      fi
    done
  fi
  podman rm --force --time 5 "$WEB" "$WORKER" >/dev/null 2>&1 || true
  if [ -n "$SINK_PID" ]; then kill "$SINK_PID" 2>/dev/null || true; wait "$SINK_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ensure_tools() {
  local need=()
  command -v podman >/dev/null || need+=(podman)
  command -v buildah >/dev/null || need+=(buildah)
  command -v runc >/dev/null || need+=(runc)
  command -v debootstrap >/dev/null || need+=(debootstrap)
  [ ${#need[@]} -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || fail "missing ${need[*]}; install them as root: apt-get install ${need[*]}"
  say "installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
}

# The Debian mirror this machine's apt uses, read from its sources (deb822 or one-line format).
debian_mirror() {
  local mirror=""
  if compgen -G "/etc/apt/sources.list.d/*.sources" >/dev/null; then
    mirror="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources)"
  fi
  if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
    mirror="$(awk '$1 == "deb" && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list)"
  fi
  [ -n "$mirror" ] || fail "no Debian mirror found in /etc/apt/sources.list{,.d}"
  echo "$mirror"
}

# Build the local stand-in for the Dockerfile's base image, laid out like the official one.
ensure_base_image() {
  local base="$1" minor="$2" suite="$3"
  local full="docker.io/library/$base"
  if podman image exists "$full" && [ "${CONTAINER_REBUILD_BASE:-0}" != 1 ]; then
    say "base image $base: using the local stand-in"
    return 0
  fi
  local pyenv_root="${PYENV_ROOT:-$HOME/.pyenv}" python_home
  python_home="$(ls -d "$pyenv_root"/versions/"$minor".* 2>/dev/null | sort -V | tail -n 1)"
  [ -n "$python_home" ] && [ -x "$python_home/bin/python$minor" ] \
    || fail "no CPython $minor under $pyenv_root/versions to build the $base stand-in"
  local version rootfs="$WORK/rootfs" mirror
  version="$(basename "$python_home")"
  mirror="$(debian_mirror)"
  say "building the $base stand-in: Debian $suite + CPython $version (about a minute)"
  # The shared libraries CPython links against, by their bookworm package names (trixie renamed
  # several, e.g. libssl3t64): another suite needs this list updated.
  debootstrap --variant=minbase \
    --include=ca-certificates,netbase,tzdata,libssl3,libffi8,libsqlite3-0,libbz2-1.0,liblzma5,libreadline8,libncursesw6,zlib1g,libuuid1,libexpat1,libnsl2,libtirpc3 \
    "$suite" "$rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1 \
    || { tail -n 20 "$WORK/debootstrap.log" >&2; fail "debootstrap from $mirror failed"; }

  # CPython under /usr/local as the official image has it: the interpreter, its standard
  # library and headers, but none of the machine's extra packages or console scripts.
  mkdir -p "$rootfs/usr/local/bin" "$rootfs/usr/local/lib"
  cp -a "$python_home/include" "$rootfs/usr/local/"
  cp -a "$python_home"/lib/libpython* "$rootfs/usr/local/lib/"
  tar -C "$python_home/lib" --exclude="python$minor/site-packages/*" --exclude="python$minor/test" \
    --exclude='__pycache__' -cf - "python$minor" | tar -C "$rootfs/usr/local/lib" -xf -
  local script
  for script in "python$minor" "python$minor-config" "pydoc$minor" "2to3-$minor" "idle$minor"; do
    [ -e "$python_home/bin/$script" ] && cp -a "$python_home/bin/$script" "$rootfs/usr/local/bin/"
  done
  ln -sf "python$minor" "$rootfs/usr/local/bin/python3"
  ln -sf python3 "$rootfs/usr/local/bin/python"
  # Console scripts still name the pyenv interpreter in their #! line.
  for script in "$rootfs"/usr/local/bin/*; do
    if [ -f "$script" ] && [ ! -L "$script" ] && head -c 2 "$script" | grep -q '^#!'; then
      sed -i "1s|^#!.*python.*|#!/usr/local/bin/python$minor|" "$script"
    fi
  done
  chroot "$rootfs" /sbin/ldconfig
  chroot "$rootfs" /usr/local/bin/python3 -m ensurepip --default-pip >/dev/null 2>&1 \
    || fail "ensurepip failed in the $base stand-in"
  # pip inside builds trusts what the machine's pip trusts.
  cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
  if [ -f /etc/pip.conf ]; then
    cp /etc/pip.conf "$rootfs/etc/pip.conf"
  else
    printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$rootfs/etc/pip.conf"
  fi
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*

  tar -C "$rootfs" -cf - . | podman import \
    --change "ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin" \
    --change "ENV LANG=C.UTF-8" \
    --change "ENV PYTHON_VERSION=${version}" \
    --change 'CMD ["python3"]' \
    - "$full" >"$WORK/import.log" 2>&1 \
    || { tail -n 20 "$WORK/import.log" >&2; fail "podman import of the $base stand-in failed"; }
  rm -rf "$rootfs"
  if ! podman run --rm "${RUN_FLAGS[@]}" "$full" python -c 'import ssl, sqlite3, ctypes, uuid'; then
    podman rmi "$full" >/dev/null 2>&1 || true
    fail "the $base stand-in cannot import the standard library's C modules"
  fi
}

free_port() {
  local port="$1"
  while port_open 127.0.0.1 "$port"; do port=$((port + 1)); done
  echo "$port"
}

app_env() {
  printf '%s\n' \
    "DEBUG=false" \
    "SECRET_KEY=container-check-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
    "JWT_SIGNING_KEY=container-check-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
    "DATABASE_URL=$DATABASE_URL" \
    "REDIS_URL=$REDIS_URL" \
    "ALLOWED_HOSTS=127.0.0.1,localhost" \
    "PUBLIC_URL=$PUBLIC_URL" \
    "DEFAULT_FROM_EMAIL=auth@example.com" \
    "EMAIL_BACKEND=django.core.mail.backends.smtp.EmailBackend" \
    "EMAIL_HOST=127.0.0.1" \
    "EMAIL_PORT=$SMTP_PORT" \
    "EMAIL_USE_TLS=false" \
    "PORT=$PORT"
}

# ---------------------------------------------------------------------------------------------
[ "$(id -u)" -eq 0 ] || fail "run as root: podman and debootstrap need it here"
ensure_tools
ensure_venv "$ROOT/requirements-dev.txt"
ensure_postgres
ensure_redis
ensure_database
flush_redis_database

FROM_IMAGE="$(awk 'toupper($1) == "FROM" {print $2; exit}' Dockerfile)"
MINOR="$(sed -n 's/^python:\([0-9]*\.[0-9]*\)-slim-[a-z]*$/\1/p' <<<"$FROM_IMAGE")"
SUITE="${FROM_IMAGE##*-}"
[ -n "$MINOR" ] || fail "the Dockerfile starts FROM $FROM_IMAGE; expected python:3.X-slim-<suite>"
ensure_base_image "$FROM_IMAGE" "$MINOR" "$SUITE"

say "podman build"
previous="$(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)"
podman build --pull=never --format docker --runtime runc --tag "$IMAGE" --file Dockerfile . \
  >"$WORK/build.log" 2>&1 || { tail -n 40 "$WORK/build.log" >&2; fail "podman build failed"; }
# Each code change leaves the previous image untagged; drop it so runs do not fill the disk.
if [ -n "$previous" ] && [ "$previous" != "$(podman image inspect --format '{{.Id}}' "$IMAGE")" ]; then
  podman rmi "$previous" >/dev/null 2>&1 || true
fi

PORT="$(free_port "${CONTAINER_PORT:-8180}")"
SMTP_PORT="$(free_port $((PORT + 1)))"
PUBLIC_URL="http://127.0.0.1:$PORT"
app_env >"$WORK/app.env"

say "SMTP sink on 127.0.0.1:$SMTP_PORT"
"$PY" -m aiosmtpd --nosetuid --listen "127.0.0.1:$SMTP_PORT" \
  --class aiosmtpd.handlers.Mailbox "$WORK/maildir" >"$WORK/smtp.log" 2>&1 &
SINK_PID=$!
wait_port 127.0.0.1 "$SMTP_PORT" "the SMTP sink"

say "migrations, in the image"
podman run --rm "${RUN_FLAGS[@]}" --no-healthcheck --env-file "$WORK/app.env" "$IMAGE" \
  python manage.py migrate --noinput >"$WORK/migrate.log" 2>&1 \
  || { tail -n 30 "$WORK/migrate.log" >&2; fail "migrate in the image failed"; }

say "web and worker containers (web on :$PORT)"
# Without systemd podman complains that it cannot schedule the HEALTHCHECK; it is run by hand below.
podman run --detach --name "$WEB" "${RUN_FLAGS[@]}" --env-file "$WORK/app.env" "$IMAGE" \
  >/dev/null 2>"$WORK/run-web.err" || { cat "$WORK/run-web.err" >&2; fail "the web container did not start"; }
podman run --detach --name "$WORKER" "${RUN_FLAGS[@]}" --env-file "$WORK/app.env" --no-healthcheck \
  "$IMAGE" celery -A auth_service worker --loglevel INFO >/dev/null \
  || fail "the worker container did not start"

"$PY" scripts/smoke.py --base-url "http://127.0.0.1:$PORT" --static \
  --maildir "$WORK/maildir" --public-url "$PUBLIC_URL" \
  || fail "the running containers did not behave (see above)"

say "HEALTHCHECK, as podman runs it"
podman healthcheck run "$WEB" >/dev/null 2>&1 || fail "podman healthcheck run $WEB reported unhealthy"
[ "$(podman exec "$WEB" id -u)" = 10001 ] || fail "the web process does not run as uid 10001"
podman logs "$WEB" >"$WORK/web.log" 2>&1
if grep -q 'Permission denied' "$WORK/web.log"; then
  grep 'Permission denied' "$WORK/web.log" >&2
  fail "gunicorn could not write somewhere in the image"
fi
"$PY" - "$WORK/web.log" <<'PY' || fail "the web container wrote log lines that are not JSON"
import json, sys
def is_json(line):
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False
lines = [line for line in open(sys.argv[1]) if line.strip()]
bad = [line for line in lines if not is_json(line)]
sys.exit(f"{len(bad)} of {len(lines)} lines are not JSON, e.g. {bad[0]!r}" if bad else 0)
PY
# Celery prints its banner as plain text; its log records are JSON like the web's.
podman logs "$WORKER" >"$WORK/worker.log" 2>&1
grep -q '^{.*"celery.apps.worker".*ready\."}$' "$WORK/worker.log" \
  || fail "the worker container logged no JSON 'ready.' record"
podman run --rm "${RUN_FLAGS[@]}" --no-healthcheck --env-file "$WORK/app.env" "$IMAGE" \
  python manage.py check --deploy --fail-level WARNING >/dev/null \
  || fail "manage.py check --deploy reports problems in the image"

say "a half-CPU container hashes one password at a time"
# Render's Starter plan is half a CPU of a larger host: the hash slots follow the quota.
slots=$(podman run --rm "${RUN_FLAGS[@]}" --no-healthcheck --cpus 0.5 --env-file "$WORK/app.env" \
  "$IMAGE" python manage.py shell -v 0 -c 'from django.conf import settings; print(settings.PASSWORD_HASH_SLOTS)')
[ "$slots" = 1 ] || fail "PASSWORD_HASH_SLOTS is ${slots:-unset} under a 0.5-CPU quota, not 1"

say "container check passed"
