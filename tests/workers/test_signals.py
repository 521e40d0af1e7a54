"""What a worker says about its settings as it starts."""

from __future__ import annotations

import pytest

from shared.settings import load_settings
from workers.signals import short_lease_warning


@pytest.mark.parametrize(
    ("lease_s", "timeout_s", "warned"), [(60, 30, False), (59, 30, True), (5, 30, True)]
)
def test_a_lease_shorter_than_two_calls_is_warned_of(lease_s, timeout_s, warned):
    settings = load_settings({}, lease_s=lease_s, http_timeout_s=timeout_s)
    warning = short_lease_warning(settings)
    assert (warning is not None) is warned
    if warned:
        assert f"SEGQ_LEASE_S={lease_s} is less than twice SEGQ_HTTP_TIMEOUT_S=30" in warning
