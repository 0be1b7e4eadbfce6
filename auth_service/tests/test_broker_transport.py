"""The broker connection: kombu's Redis transport, one client per connection pool."""

import os
import subprocess
import sys
import time

import pytest
import redis
from django.conf import settings
from kombu import Producer, Queue

from auth_service import broker_transport
from auth_service.celery import app

QUEUE = "auth-test-broker-transport"


@pytest.fixture
def channel():
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        channel.client.delete(QUEUE)
        yield channel
        channel.client.delete(QUEUE)


def publish(channel, body: dict) -> None:
    Producer(channel).publish(body, routing_key=QUEUE, declare=[Queue(QUEUE)])


def test_celery_reaches_redis_through_the_project_transport(channel):
    assert isinstance(channel.connection, broker_transport.Transport)


def test_messages_go_out_through_one_client_until_kombu_replaces_the_pool(channel):
    # Given messages published through one channel
    publish(channel, {"n": 1})
    publish(channel, {"n": 2})
    with channel.conn_or_acquire() as first, channel.conn_or_acquire() as again:
        assert first is again
        assert first.connection_pool is channel.pool

    # When kombu drops the channel's pool (it does after a fork or a lost connection)
    channel._disconnect_pools()

    # Then the next message goes through a client of the new pool, and none is lost
    publish(channel, {"n": 3})
    with channel.conn_or_acquire() as after:
        assert after is not first
        assert after.connection_pool is channel.pool
    assert channel.client.llen(QUEUE) == 3


def test_a_client_given_by_the_caller_is_used_as_it_is(channel):
    given = channel._create_client()

    with channel.conn_or_acquire(given) as used:
        assert used is given


ROUND_TRIP = """
from kombu import Producer, Queue
from auth_service.celery import app
with app.connection_for_write() as connection:
    Producer(connection.default_channel).publish({"n": 1}, routing_key="q", declare=[Queue("q")])
    print(connection.default_channel.client.llen("q"))
    print(type(connection.default_channel).__module__)
"""


@pytest.mark.parametrize(
    ("user", "auth"),
    [
        (None, ["--requirepass", "s3cr#t"]),
        # a Redis 6 ACL user, the default user off: the password alone is refused
        (
            "app",
            ["--user", "default", "off", "--user", "app", "on", ">s3cr#t", "~*", "&*", "+@all"],
        ),
    ],
    ids=["requirepass", "acl user"],
)
def test_a_redis_reached_through_its_socket_carries_tasks(tmp_path, user, auth):
    # Given a Redis that listens on a socket only, with a password, and REDIS_URL in redis-py's
    # unix:// form, which the broker also takes
    socket = tmp_path / "redis.sock"
    server = subprocess.Popen(  # noqa: S603 - fixed argv
        ["redis-server", "--port", "0", "--unixsocket", str(socket), "--save", ""]
        + [*auth, "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(unix_socket_path=str(socket), username=user, password="s3cr#t", db=3)
        for _ in range(100):
            if socket.exists():
                break
            time.sleep(0.05)
        env = {**os.environ, "REDIS_URL": f"unix://{user or ''}:s3cr%23t@{socket}?db=3"}
        env.pop("CELERY_BROKER_URL", None)

        # When a web process queues a task
        result = subprocess.run(  # noqa: S603 - fixed argv
            [sys.executable, "-c", ROUND_TRIP],
            env=env,
            capture_output=True,
            text=True,
            cwd=settings.BASE_DIR,
            timeout=60,
            check=False,
        )

        # Then it is in that Redis's database, where the worker reads
        assert result.returncode == 0, result.stderr
        # through the project's transport (one client per pool), not kombu's stock one
        assert result.stdout.split() == ["1", "auth_service.broker_transport"]
        assert client.llen("q") == 1
    finally:
        server.kill()
        server.wait(timeout=10)
