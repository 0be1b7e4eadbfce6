# One image for both processes. The default command serves HTTP with gunicorn; the worker runs
# the same image with: celery -A auth_service worker --loglevel INFO
# The HEALTHCHECK below probes HTTP, which a worker container never answers: start the worker
# with --no-healthcheck, or give it the Celery ping check that docker-compose.yml uses.

# The Debian release is named: the bare `-slim` tag moves to each new release (bookworm to
# trixie in 2025), changing the image's system libraries under an unchanged Dockerfile.

# --- build: dependencies in a virtualenv of their own, then the code and its static files ----
FROM python:3.11-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# Only the requirements first, so this layer is rebuilt when they change and not on every edit.
COPY requirements.txt /tmp/requirements.txt
RUN pip install --no-cache-dir -r /tmp/requirements.txt

WORKDIR /app
COPY . .
# collectstatic only imports the settings: dummy values satisfy them and never reach the image.
RUN DEBUG=false \
    SECRET_KEY=collectstatic-at-build-time-only \
    DATABASE_URL=postgres://build@127.0.0.1:5432/build \
    REDIS_URL=redis://build.invalid:6379/0 \
    PUBLIC_URL=http://build.invalid \
    python manage.py collectstatic --noinput --verbosity 0 \
    && python -m compileall -q /app

# --- runtime: the virtualenv and the app, owned by root, run by an unprivileged user ---------
FROM python:3.11-slim-bookworm AS runtime

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PORT=8000
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin app

COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY --from=build /app /app

USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as r; r.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=4)"]
CMD ["gunicorn", "--config", "gunicorn.conf.py", "auth_service.wsgi"]
