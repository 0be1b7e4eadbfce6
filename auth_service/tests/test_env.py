"""Rates and other values read from the environment fail loudly when malformed."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from auth_service.env import env_rate, parse_rate


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
