"""Fleet metrics: what workers record in Redis adds up across processes, and the exporter
serves it (with job counts, pause state and budget rates) as Prometheus text."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request

import fakeredis
import pytest
import redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from producer.commands.metrics import serve_metrics
from shared import redis_keys
from shared.fleet_limiter import FleetLimiter
from shared.job_store import JobOptions, JobStore, NewJob
from shared.local_redis import free_port
from shared.metrics import FleetCollector, FleetMetrics
from shared.settings import load_settings


def scrape(client: redis.Redis, **collector_options: float) -> dict[tuple[str, tuple], float]:
    """The exporter's text, parsed back: (sample name, sorted labels) -> value."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(client, **collector_options))
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def bucket(samples: dict, metric: str, le: str) -> float:
    return samples[(f"{metric}_bucket", (("le", le),))]


def test_samples_from_several_worker_processes_add_up(redis_url, redis_client):
    # Given two workers, each with its own Redis connection
    workers = [FleetMetrics(redis.Redis.from_url(redis_url)) for _ in range(2)]
    # When both record answers, 429s and budget waits
    for metrics in workers:
        metrics.upstream_answer("submit", 200)
        metrics.upstream_answer("status", 503)
        metrics.upstream_answer("status", None)
        metrics.rate_limited("submit")
        metrics.budget_wait("poll", 0.25)
    for metrics in workers:
        metrics.redis.close()
    # Then one scrape shows the fleet's totals
    samples = scrape(redis_client)
    answers = "segq_upstream_answers_total"
    assert samples[(answers, (("http_status", "200"), ("kind", "submit")))] == 2
    assert samples[(answers, (("http_status", "503"), ("kind", "status")))] == 2
    assert samples[(answers, (("http_status", "none"), ("kind", "status")))] == 2
    assert samples[("segq_rate_limited_total", (("kind", "submit"),))] == 2
    assert samples[("segq_budget_wait_seconds_total", (("kind", "poll"),))] == 0.5
    assert samples[("segq_budget_waits_total", (("kind", "poll"),))] == 2
    assert samples[("segq_redis_up", ())] == 1


def test_histograms_are_cumulative_with_sum_and_count(redis_client):
    metrics = FleetMetrics(redis_client)
    for seconds in (0.3, 0.3, 1.0, 100.0, 5000.0):
        metrics.inference_seconds(seconds)
    for polls in (1, 3, 3, 250):
        metrics.polls_per_job(polls)
    metrics.end_to_end_seconds(42.0)
    samples = scrape(redis_client)
    name = "segq_inference_seconds"
    assert bucket(samples, name, "0.25") == 0
    assert bucket(samples, name, "0.5") == 2
    assert bucket(samples, name, "1.0") == 3
    assert bucket(samples, name, "120.0") == 4
    assert bucket(samples, name, "+Inf") == 5
    assert samples[(f"{name}_count", ())] == 5
    assert samples[(f"{name}_sum", ())] == pytest.approx(5101.6)
    assert bucket(samples, "segq_polls_per_job", "2.0") == 1
    assert bucket(samples, "segq_polls_per_job", "3.0") == 3
    assert bucket(samples, "segq_polls_per_job", "+Inf") == 4
    assert bucket(samples, "segq_end_to_end_seconds", "30.0") == 0
    assert bucket(samples, "segq_end_to_end_seconds", "60.0") == 1


def test_a_callers_pipeline_carries_the_samples_in_its_own_round_trip(redis_client):
    metrics = FleetMetrics(redis_client)
    pipe = redis_client.pipeline(transaction=False)
    metrics.upstream_answer("result", 200, pipe=pipe)
    metrics.end_to_end_seconds(3.0, pipe=pipe)
    metrics.polls_per_job(2, pipe=pipe)
    assert redis_client.exists(redis_keys.METRICS) == 0
    pipe.execute()
    fields = redis_client.hgetall(redis_keys.METRICS)
    assert fields["upstream_answers:result:200"] == "1"
    assert fields["e2e_seconds_bucket:5.0"] == "1"
    assert fields["polls_per_job_count"] == "1"


def test_buffered_samples_reach_redis_within_the_flush_interval_and_on_close(redis_url):
    # Given two workers that buffer their samples, one flushing every 0.1 s, one never before close
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    regular = FleetMetrics(redis.Redis.from_url(redis_url), flush_every_s=0.1)
    at_exit = FleetMetrics(redis.Redis.from_url(redis_url), flush_every_s=3600)
    # When both record answers and a histogram sample
    for metrics in (regular, at_exit):
        for _ in range(3):
            metrics.upstream_answer("status", 200)
        metrics.polls_per_job(2)
    # Then nothing costs a round trip at once; the regular flush arrives within its interval
    deadline = time.monotonic() + 5
    while client.hget(redis_keys.METRICS, "upstream_answers:status:200") != "3":
        assert time.monotonic() < deadline, "the regular flush never came"
        time.sleep(0.05)
    # And closing the other (a worker's normal shutdown) writes what it held: the sums add up
    at_exit.close()
    regular.close()
    fields = client.hgetall(redis_keys.METRICS)
    assert fields["upstream_answers:status:200"] == "6"
    assert fields["polls_per_job_count"] == "2"
    assert float(fields["polls_per_job_sum"]) == 4.0
    for metrics in (regular, at_exit):
        metrics.redis.close()
    client.close()


def test_a_flush_that_cannot_reach_redis_keeps_its_sums_for_the_next(redis_url):
    # Given a buffering worker whose Redis is away
    metrics = FleetMetrics(
        redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2), flush_every_s=3600
    )
    metrics.rate_limited("poll")
    metrics.budget_wait("poll", 1.5)
    metrics.flush()  # logs a warning, raises nothing
    # When Redis is reachable again (here: the same sums moved to a live client)
    metrics.redis.close()
    metrics.redis = redis.Redis.from_url(redis_url, decode_responses=True)
    metrics.rate_limited("poll")
    metrics.close()
    # Then nothing was lost
    fields = metrics.redis.hgetall(redis_keys.METRICS)
    assert fields["rate_limited:poll"] == "2"
    assert float(fields["budget_wait_seconds:poll"]) == 1.5
    metrics.redis.close()


def test_a_sample_lost_to_a_dead_redis_does_not_raise():
    metrics = FleetMetrics(redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2))
    metrics.rate_limited("poll")
    metrics.redis.close()


def test_a_kind_with_a_colon_is_refused(redis_client):
    with pytest.raises(ValueError, match="without ':'"):
        FleetMetrics(redis_client).rate_limited("a:b")


def test_job_counts_pause_and_budget_rates_come_from_the_job_store(redis_url, redis_client):
    # Given jobs in the store, a paused fleet, and a budget the limiter has spent from
    settings = load_settings(
        {"SEGQ_REDIS_URL": redis_url, "SEGMIND_API_KEY": "test-key"}, poll_rate_limit=120.0
    )
    store = JobStore(redis_client, retention_s=3600)
    store.add_jobs([NewJob(f"j{n:016x}", {"prompt": "p"}) for n in range(3)], batch_id=None,
                   options=JobOptions())  # fmt: skip
    store.pause_fleet("402: out of credits")
    limiter = FleetLimiter(redis_client, settings)
    limiter.take_slot("poll")
    redis_client.zadd(redis_keys.rate_accepted(limiter.fingerprint, "poll"), {"x": 1})
    # When Prometheus scrapes
    samples = scrape(redis_client)
    # Then it sees them all
    assert samples[("segq_jobs", (("state", "queued"),))] == 3
    assert samples[("segq_jobs", (("state", "completed"),))] == 0
    assert samples[("segq_fleet_paused", ())] == 1
    assert samples[("segq_fleet_paused_since_timestamp_seconds", ())] == pytest.approx(
        time.time(), abs=60
    )
    info = ("segq_fleet_pause_info", (("manual", "1"), ("reason", "402: out of credits")))
    assert samples[info] == 1
    rate = ("segq_fleet_rate_per_minute", (("account", limiter.fingerprint), ("kind", "poll")))
    assert samples[rate] == pytest.approx(120.0 * settings.rate_safety)
    assert [key for key in samples if key[0] == "segq_fleet_rate_per_minute"] == [rate]
    # And after a resume the pause is gone
    store.resume_fleet()
    samples = scrape(redis_client)
    assert samples[("segq_fleet_paused", ())] == 0
    assert not [key for key in samples if key[0] == "segq_fleet_pause_info"]


def test_budget_keys_are_found_again_only_after_the_rescan_interval():
    client = fakeredis.FakeRedis()
    registry = CollectorRegistry(auto_describe=False)
    collector = FleetCollector(client, rate_keys_rescan_s=3600)
    registry.register(collector)
    generate_latest(registry)
    client.hset(redis_keys.rate("acct", "submit"), "rate_per_min", 60)
    assert b'account="acct"' not in generate_latest(registry)
    collector._rate_keys_at = float("-inf")
    assert b'segq_fleet_rate_per_minute{account="acct",kind="submit"} 60.0' in generate_latest(
        registry
    )


def test_an_unreachable_redis_is_reported_as_down_not_as_a_server_error():
    client = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    assert scrape(client) == {("segq_redis_up", ()): 0}
    client.close()


def test_the_exporter_serves_prometheus_text_over_http(redis_client):
    FleetMetrics(redis_client).upstream_answer("submit", 429)
    server = serve_metrics(redis_client, "127.0.0.1", 0)
    try:
        text = get_text(f"http://127.0.0.1:{server.server_port}/metrics")
    finally:
        server.shutdown()
        server.server_close()
    assert 'segq_upstream_answers_total{http_status="429",kind="submit"} 1.0' in text
    assert "# HELP segq_jobs " in text


def test_segq_metrics_serves_on_loopback_and_stops_on_sigterm(redis_url):
    port = free_port()
    env = {**os.environ, "SEGQ_REDIS_URL": redis_url}
    command = [sys.executable, "-m", "producer", "metrics", "--port", str(port)]
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    try:
        text = wait_for_text(process, f"http://127.0.0.1:{port}/metrics", timeout_s=20)
        assert "segq_redis_up 1.0" in text
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
    finally:
        process.kill()
        process.wait(10)
        process.stderr.close()


def get_text(url: str) -> str:
    """GET without any proxy the environment names (the server is on loopback)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=5) as answer:
        return answer.read().decode()


def wait_for_text(process: subprocess.Popen, url: str, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            pytest.fail(f"segq metrics exited with {process.returncode}: {process.stderr.read()}")
        try:
            return get_text(url)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
