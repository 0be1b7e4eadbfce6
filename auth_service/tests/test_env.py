"""Rates and other values read from the environment fail loudly when malformed."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from auth_service.env import env_bool, env_int, env_rate, env_seconds, parse_rate


@pytest.mark.parametrize(
    ("rate", "parsed"),
    [
        ("30/min", (30, 60)),
        ("5/hour", (5, 3600)),
        ("1/s", (1, 1)),
        ("100/day", (100, 86400)),
        ("20/minutes", (20, 60)),
        ("3/hours", (3, 3600)),
        ("100/hr", (100, 3600)),
        ("100/hrs", (100, 3600)),
        ("10/mins", (10, 60)),
        ("2/secs", (2, 1)),
    ],
)
def test_drf_rate_syntax_is_understood(rate, parsed):
    assert parse_rate(rate) == parsed


@pytest.mark.parametrize("rate", ["30", "30/", "0/min", "-1/min", "x/min", "30/mxyz"])
def test_malformed_rates_are_refused(rate):
    with pytest.raises(ImproperlyConfigured):
        parse_rate(rate)


def test_rate_from_environment_names_the_variable_when_wrong(monkeypatch):
    monkeypatch.setenv("THROTTLE_LOGIN_IP", "lots")

    with pytest.raises(ImproperlyConfigured, match="THROTTLE_LOGIN_IP"):
        env_rate("THROTTLE_LOGIN_IP", "30/min")


@pytest.mark.parametrize("blank", ["", "  "])
@pytest.mark.parametrize("default", [True, False])
def test_a_blank_switch_is_unset_and_keeps_its_default(monkeypatch, blank, default):
    monkeypatch.setenv("SECURE_COOKIES", blank)

    assert env_bool("SECURE_COOKIES", default=default) is default


@pytest.mark.parametrize("value", ["1", "yes", "On", " TRUE "])
def test_switches_take_the_usual_spellings_of_true(monkeypatch, value):
    monkeypatch.setenv("SECURE_COOKIES", value)

    assert env_bool("SECURE_COOKIES", default=False) is True


def test_a_whole_number_past_its_maximum_names_the_variable(monkeypatch):
    monkeypatch.setenv("EMAIL_PORT", "65536")

    with pytest.raises(ImproperlyConfigured, match="EMAIL_PORT must be at most 65535, not 65536."):
        env_int("EMAIL_PORT", 25, minimum=1, maximum=65535)


def test_a_whole_number_is_at_most_what_a_c_int_holds_by_default(monkeypatch):
    monkeypatch.setenv("NOTICE_SWEEP_AFTER", str(2**31))

    with pytest.raises(ImproperlyConfigured, match="must be at most 2147483647"):
        env_int("NOTICE_SWEEP_AFTER", 120, minimum=0)


@pytest.mark.parametrize("value", ["inf", "1e400", "3600.5"])
def test_seconds_past_their_maximum_are_refused(monkeypatch, value):
    monkeypatch.setenv("REDIS_SOCKET_TIMEOUT", value)

    with pytest.raises(ImproperlyConfigured, match="REDIS_SOCKET_TIMEOUT must be at most 3600"):
        env_seconds("REDIS_SOCKET_TIMEOUT", 1, maximum=3600)
