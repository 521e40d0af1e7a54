"""What a worker says about its settings as it starts."""

from __future__ import annotations

import pytest

from shared.local_redis import start_local_redis
from shared.settings import load_settings
from tests.support.fleet import wait_until
from workers.celery_app import ALL_QUEUES
from workers.signals import settings_warnings, setup_warnings

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


def test_a_lease_shorter_than_two_webhook_deliveries_is_warned_of():
    settings = load_settings(SIGNED, lease_s=15, http_timeout_s=5)
    [warning] = settings_warnings(settings)
    assert warning.startswith("SEGQ_LEASE_S=15 is less than twice a webhook delivery's 10 s")
    assert settings_warnings(load_settings(SIGNED, lease_s=20, http_timeout_s=5)) == []


def test_a_retention_shorter_than_segminds_is_warned_of():
    assert settings_warnings(load_settings(SIGNED, job_retention_s=3600)) == []
    [warning] = settings_warnings(load_settings(SIGNED, job_retention_s=1800))
    assert warning.startswith(
        "SEGQ_JOB_RETENTION_S=1800 is less than SEGQ_UPSTREAM_RETENTION_S=3600: an ended job's"
    )


def test_webhooks_that_cannot_be_signed_are_warned_of():
    assert settings_warnings(load_settings(SIGNED)) == []
    [warning] = settings_warnings(load_settings({}))
    assert warning.startswith("SEGQ_WEBHOOK_SECRET is not set: jobs with a webhook_url")


def test_a_fleet_setup_that_strands_or_loses_jobs_is_warned_of():
    safe = {"maxmemory-policy": "noeviction", "min-replicas-to-write": "1",
            "min-replicas-max-lag": "10"}  # fmt: skip
    assert setup_warnings(set(ALL_QUEUES), safe, sentinel=True) == []
    assert setup_warnings(set(ALL_QUEUES), {}, sentinel=True) == []  # CONFIG refused: no word
    risky = {"maxmemory-policy": "allkeys-lru", "min-replicas-to-write": "0"}
    [queues, policy] = setup_warnings({"segq-submits", "segq-polls"}, risky, sentinel=False)
    assert queues.startswith("this worker does not consume segq-submits-interactive, segq-notify")
    assert policy.startswith("the job store's Redis has maxmemory-policy allkeys-lru")
    [_, _, replicas] = setup_warnings({"segq-submits", "segq-polls"}, risky, sentinel=True)
    assert replicas.startswith("the job store's Redis master (Sentinel) has min-replicas-to-")
    [lag] = setup_warnings(set(ALL_QUEUES), {**safe, "min-replicas-max-lag": "0"}, sentinel=True)
    assert lag.startswith("the job store's Redis master (Sentinel) has min-replicas-max-lag 0:")


@pytest.mark.integration
def test_a_worker_says_so_at_start_when_it_skips_a_queue_or_redis_may_evict(make_fleet):
    # A Redis of its own: the policy would outlast the test on the session's shared server
    # (an OOM test after it saw keys evicted instead of writes refused).
    with start_local_redis() as server:
        fleet = make_fleet(on_redis=server.url)
        fleet.store.redis.config_set("maxmemory-policy", "allkeys-lru")
        worker = fleet.start_worker(
            concurrency=2, celery_options=["--queues=segq-submits,segq-polls"]
        )
        log = wait_until(
            lambda: (
                "maxmemory-policy allkeys-lru" in worker.output(100_000) and worker.output(100_000)
            ),
            "the warnings",
            30,
            [worker],
        )
        fleet.stop()
    assert "this worker does not consume segq-submits-interactive, segq-notify" in log
