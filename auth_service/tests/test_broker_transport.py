"""The broker connection: kombu's Redis transport, one client per connection pool."""

import pytest
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
