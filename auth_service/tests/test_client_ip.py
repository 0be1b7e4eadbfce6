"""Which address counts as the client's, given how many proxies are trusted."""

import pytest
from django.test import RequestFactory

from auth_service.client_ip import _resolved, client_ip


def request_from(remote="10.1.2.3", forwarded=None):
    headers = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        headers["HTTP_X_FORWARDED_FOR"] = forwarded
    return RequestFactory().get("/", **headers)


@pytest.mark.parametrize(
    ("trusted", "forwarded", "expected"),
    [
        (0, None, "10.1.2.3"),
        (0, "203.0.113.5", "10.1.2.3"),
        (1, "203.0.113.5", "203.0.113.5"),
        (1, "6.6.6.6, 203.0.113.5", "203.0.113.5"),
        (2, "203.0.113.5, 104.16.0.1", "203.0.113.5"),
        (2, "6.6.6.6, 7.7.7.7, 203.0.113.5, 104.16.0.1", "203.0.113.5"),
        (2, "104.16.0.1", "104.16.0.1"),
        (2, None, "10.1.2.3"),
        (2, " , ", "10.1.2.3"),
        (1, "2001:DB8:0:0::1", "2001:db8::1"),
        (1, "::ffff:203.0.113.5", "203.0.113.5"),
    ],
)
def test_client_ip_is_taken_from_the_trusted_end_of_x_forwarded_for(
    settings, trusted, forwarded, expected
):
    settings.TRUSTED_PROXY_COUNT = trusted

    assert client_ip(request_from(forwarded=forwarded)) == expected


def test_client_cannot_choose_its_address_by_sending_x_forwarded_for(settings):
    settings.TRUSTED_PROXY_COUNT = 2
    chosen = [
        client_ip(request_from(forwarded=f"{forged}, 198.51.100.7, 104.16.0.1"))
        for forged in ("1.1.1.1", "8.8.8.8", "1.1.1.1, 2.2.2.2", "not-an-ip")
    ]

    assert set(chosen) == {"198.51.100.7"}


def test_garbage_where_a_proxy_should_have_written_falls_back_to_the_socket(settings):
    settings.TRUSTED_PROXY_COUNT = 1

    assert client_ip(request_from(forwarded="1.1.1.1, <script>")) == "10.1.2.3"


@pytest.mark.parametrize(
    ("forwarded", "expected"),
    [
        # Shapes of header captured on Render: with and without an internal hop at the end.
        ("81.97.145.24, 172.71.195.123", "81.97.145.24"),
        ("81.97.145.24, 172.71.195.123, 10.226.90.65", "81.97.145.24"),
        ("1.1.1.1, 172.70.247.28, 10.19.6.53", "1.1.1.1"),
        ("2.2.2.2,1.1.1.1, 172.71.95.118, 10.19.64.237", "1.1.1.1"),  # a forged first entry
        ("81.97.145.24, 172.71.195.123, 10.0.0.9, 100.64.1.2, fd00::1", "81.97.145.24"),
        ("10.19.6.53", "10.1.2.3"),  # only internal hops: the socket's address
    ],
)
def test_on_render_internal_hops_at_the_end_are_not_counted_as_proxies(
    settings, forwarded, expected
):
    settings.TRUSTED_PROXY_COUNT = 2
    settings.TRUSTED_PROXY_SKIP_PRIVATE = True

    assert client_ip(request_from(forwarded=forwarded)) == expected


def test_elsewhere_a_client_on_a_private_network_cannot_hide_behind_its_own_entries(settings):
    # Behind one proxy on a LAN: the client's own address is private, and what it sent is not.
    settings.TRUSTED_PROXY_COUNT = 1
    settings.TRUSTED_PROXY_SKIP_PRIVATE = False

    assert client_ip(request_from(forwarded="1.2.3.4, 192.168.1.5")) == "192.168.1.5"


def test_a_padded_x_forwarded_for_is_not_kept_in_memory(settings):
    # Every request's access line resolves the client's address, and the cache of those
    # answers is bounded by entries, not bytes: a client padding the part of the header it
    # writes (gunicorn joins up to 100 headers of 8 KB) made each entry hold the whole header,
    # some 3 GB per worker at the cache's 4,096 entries.
    settings.TRUSTED_PROXY_COUNT = 2
    _resolved.cache_clear()
    padding = "x" * 8000

    for attempt in range(3):
        forwarded = f"{attempt}{padding}, 198.51.100.7, 104.16.0.1"
        assert client_ip(request_from(forwarded=forwarded)) == "198.51.100.7"

    assert _resolved.cache_info().currsize == 0
    assert client_ip(request_from(forwarded="198.51.100.7, 104.16.0.1")) == "198.51.100.7"
    assert _resolved.cache_info().currsize == 1
