"""What a worker says about its settings as it starts."""

from __future__ import annotations

import pytest

from shared.settings import load_settings
from workers.signals import settings_warnings

SIGNED = {"SEGQ_WEBHOOK_SECRET": "whsec-0123456789"}


@pytest.mark.parametrize(
    ("lease_s", "timeout_s", "warned"), [(60, 30, False), (59, 30, True), (5, 30, True)]
)
def test_a_lease_shorter_than_two_calls_is_warned_of(lease_s, timeout_s, warned):
    settings = load_settings(SIGNED, lease_s=lease_s, http_timeout_s=timeout_s)
    warnings = settings_warnings(settings)
    assert len(warnings) == warned
    if warned:
        assert f"SEGQ_LEASE_S={lease_s} is less than twice SEGQ_HTTP_TIMEOUT_S=30" in warnings[0]


def test_webhooks_that_cannot_be_signed_are_warned_of():
    assert settings_warnings(load_settings(SIGNED)) == []
    [warning] = settings_warnings(load_settings({}))
    assert warning.startswith("SEGQ_WEBHOOK_SECRET is not set: jobs with a webhook_url")
