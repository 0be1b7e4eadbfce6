"""Run the real Celery worker as a child process, configured like the web process under test."""

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from django.db import connection

from testing.postgres import with_database

ROOT = Path(__file__).resolve().parent.parent


def database_url() -> str:
    """DATABASE_URL, naming the database the tests run on (pytest-django's test_ database)."""
    return with_database(os.environ["DATABASE_URL"], connection.settings_dict["NAME"])


class WorkerProcess:
    def __init__(self, smtp_port: int, extra_env: dict | None = None, pool: str = "solo"):
        self.pool = pool
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "EMAIL_HOST": "127.0.0.1",
            "EMAIL_PORT": str(smtp_port),
            **(extra_env or {}),
        }
        self.process: subprocess.Popen | None = None
        handle, name = tempfile.mkstemp(prefix="auth-worker-", suffix=".log")
        os.close(handle)
        self.log_path = Path(name)

    def start(self) -> None:
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "auth_service",
                "worker",
                "--pool",
                self.pool,
                "--loglevel",
                "INFO",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        self.log_path.unlink(missing_ok=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_log(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"worker never logged {text!r}:\n{self.log()[-3000:]}")
            time.sleep(0.05)
