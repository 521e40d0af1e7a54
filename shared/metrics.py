"""Fleet-wide job metrics, kept in Redis so every worker process adds to one set of numbers.

Flower knows Celery tasks; it cannot know jobs (a job is a submit task and many poll tasks),
Segmind's answers, the fleet's budget or its pause. Workers record those with ``FleetMetrics``
into the hash ``segq:metrics`` (``shared.redis_keys.METRICS``); one ``segq metrics`` process
(``FleetCollector``) reads it with the job counters and the fleet state and serves Prometheus
text for the whole fleet, however many workers run.

Fields of ``segq:metrics`` (all HINCRBY / HINCRBYFLOAT, never reset; Prometheus handles rates):

    upstream_answers:{kind}:{http_status|none}   int    answers per call kind and HTTP status
    rate_limited:{kind}                          int    429 answers per budget kind
    budget_wait_seconds:{kind}                   float  time tasks waited for a budget slot
    budget_waits:{kind}                          int    times a task was told to wait for one
    {histogram}_bucket:{le}                      int    observations whose smallest bucket is le
    {histogram}_sum, {histogram}_count           float, int

Histogram buckets are stored non-cumulatively (one HINCRBY per observation, whatever the
number of buckets); the collector accumulates them. Histograms: ``inference_seconds``,
``e2e_seconds``, ``polls_per_job``.

Metrics served (the ``segq_`` prefix is the exporter's):

- ``segq_jobs{state}`` (gauge): jobs in each state, from ``segq:stats``, which the job scripts
  move as jobs change state. An expiring record moves nothing (no script sees it go), so
  finished counts are since the store began; a record that expired still queued is counted
  failed when the dispatcher reaches its id (``expired_in_queue``).
- ``segq_upstream_answers_total{kind,http_status}`` (counter): Segmind's answers by call
  (``submit``, ``status``, ``result``) and HTTP status; ``http_status="none"`` is no answer
  (connection error, timeout).
- ``segq_rate_limited_total{kind}`` (counter): 429 answers by budget (``submit``, ``poll``).
- ``segq_budget_wait_seconds_total{kind}`` (counter): seconds jobs were told to wait for a
  slot of the fleet's budget (a 429's hold, a result fetch's slot) after their task started.
- ``segq_budget_waits_total{kind}`` (counter): how many times that happened.
- ``segq_inference_seconds`` (histogram): Segmind's own inference time per completed job.
- ``segq_end_to_end_seconds`` (histogram): from ``segq`` accepting a job to its end.
- ``segq_polls_per_job`` (histogram): status calls each finished job needed.
- ``segq_fleet_paused`` (gauge): 1 while the fleet is paused (no new submits), else 0.
- ``segq_fleet_paused_since_timestamp_seconds`` (gauge, only while paused): when it paused.
- ``segq_fleet_pause_info{reason,manual}`` (gauge 1, only while paused): why.
- ``segq_fleet_rate_per_minute{account,kind}`` (gauge): the rate the fleet budget spends now
  per API key fingerprint (``account``) and kind (``submit``, ``poll``).
- ``segq_redis_up`` (gauge): 1 if this scrape could read Redis; 0 and nothing else if not.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, get_args

import redis
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from shared import redis_keys
from shared.job_model import JobState
from shared.redis_keys import RateKind

log = logging.getLogger("segq.metrics")

HISTOGRAM_BUCKETS: dict[str, tuple[float, ...]] = {
    "inference_seconds": (0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30, 60, 120),
    "e2e_seconds": (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600, 14400),
    "polls_per_job": (1, 2, 3, 4, 5, 7, 10, 15, 20, 30, 50, 100),
}
"""Upper bounds: SD 3.5 Turbo answers in seconds; a bulk job may wait hours for the budget."""

HISTOGRAM_METRICS = {
    "inference_seconds": ("segq_inference_seconds", "Segmind's inference time per job."),
    "e2e_seconds": ("segq_end_to_end_seconds", "Seconds from accepting a job to its end."),
    "polls_per_job": ("segq_polls_per_job", "Status calls per finished job."),
}

RATE_KEYS_RESCAN_S = 300.0
"""How long the collector reuses the budget keys it found; SCAN walks the whole keyspace,
which at a million jobs is a second of Redis time, not something to do on every scrape."""
SCAN_COUNT = 1000

Pipe = redis.client.Pipeline


def _label(value: float) -> str:
    return floatToGoString(value)


def _checked(kind: str) -> str:
    if not kind or ":" in kind:
        raise ValueError(f"metric kind {kind!r} must be a non-empty name without ':'")
    return kind


class FleetMetrics:
    """What workers record. Every method takes an optional pipeline so a caller that is
    writing to Redis anyway adds the metric to its round trip; without one, the sample is
    written at once (one round trip), or, with ``flush_every_s``, added up in this process and
    written by a background thread every ``flush_every_s`` seconds and on ``close()``.

    Buffering is what workers use: a round trip per HTTP answer was a fifth of a job's Redis
    work for numbers Prometheus scrapes every 15 s. Counters still add up across processes
    (HINCRBY of the buffered sums) and a normal shutdown writes what is left; a SIGKILLed
    worker loses at most its last ``flush_every_s`` of samples. A lost sample never fails a
    job: a flush that cannot reach Redis keeps its sums for the next one."""

    def __init__(self, client: redis.Redis, *, flush_every_s: float | None = None) -> None:
        self.redis = client
        self.flush_every_s = flush_every_s
        self._pending: dict[str, int | float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None

    def upstream_answer(self, kind: str, http_status: int | None, pipe: Pipe | None = None) -> None:
        """One answer (or none: ``http_status=None``) to a ``kind`` call (submit, status, ...)."""
        status = "none" if http_status is None else str(int(http_status))
        self._add({f"upstream_answers:{_checked(kind)}:{status}": 1}, pipe)

    def rate_limited(self, kind: str, pipe: Pipe | None = None) -> None:
        """A 429 on the ``kind`` budget (submit or poll)."""
        self._add({f"rate_limited:{_checked(kind)}": 1}, pipe)

    def budget_wait(self, kind: str, seconds: float, pipe: Pipe | None = None) -> None:
        """A task told to wait ``seconds`` for a slot of the ``kind`` budget."""
        kind = _checked(kind)
        self._add({f"budget_wait_seconds:{kind}": float(seconds), f"budget_waits:{kind}": 1}, pipe)

    def inference_seconds(self, seconds: float, pipe: Pipe | None = None) -> None:
        """Segmind's inference time of one completed job (its ``metrics``)."""
        self._observe("inference_seconds", seconds, pipe)

    def end_to_end_seconds(self, seconds: float, pipe: Pipe | None = None) -> None:
        """Time from accepting a job to its end (completed, failed or cancelled)."""
        self._observe("e2e_seconds", seconds, pipe)

    def polls_per_job(self, polls: int, pipe: Pipe | None = None) -> None:
        """Status calls one finished job needed."""
        self._observe("polls_per_job", polls, pipe)

    def flush(self) -> None:
        """Writes the buffered sums in one round trip; on failure they wait for the next."""
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return
        try:
            self._write(pending, None)
        except redis.RedisError as exc:
            log.warning("metrics not written yet (kept for the next flush): %s", exc)
            with self._lock:
                for name, amount in pending.items():
                    self._pending[name] = self._pending.get(name, 0) + amount

    def close(self) -> None:
        """Stops the background flush and writes what is left (a worker's normal shutdown)."""
        self._stop.set()
        if self._flusher is not None:
            self._flusher.join(10)
        self.flush()

    def _observe(self, histogram: str, value: float, pipe: Pipe | None) -> None:
        bounds = HISTOGRAM_BUCKETS[histogram]
        index = bisect.bisect_left(bounds, value)
        le = _label(bounds[index]) if index < len(bounds) else "+Inf"
        self._add({f"{histogram}_bucket:{le}": 1, f"{histogram}_sum": float(value),
                   f"{histogram}_count": 1}, pipe)  # fmt: skip

    def _add(self, amounts: dict[str, int | float], pipe: Pipe | None) -> None:
        if pipe is not None:
            self._write(amounts, pipe)
        elif self.flush_every_s is None:
            try:
                self._write(amounts, None)
            except redis.RedisError as exc:
                log.warning("metrics sample lost: %s", exc)
        else:
            with self._lock:
                for name, amount in amounts.items():
                    self._pending[name] = self._pending.get(name, 0) + amount
                if self._flusher is None:
                    self._flusher = threading.Thread(
                        target=self._flush_regularly, args=(self.flush_every_s,),
                        name="segq-metrics", daemon=True,
                    )  # fmt: skip
                    self._flusher.start()

    def _write(self, amounts: dict[str, int | float], pipe: Pipe | None) -> None:
        """HINCRBY for counts, HINCRBYFLOAT for sums; executed here unless ``pipe`` is given."""
        target = pipe if pipe is not None else self.redis.pipeline(transaction=False)
        for name, amount in amounts.items():
            if isinstance(amount, float):
                target.hincrbyfloat(redis_keys.METRICS, name, amount)
            else:
                target.hincrby(redis_keys.METRICS, name, amount)
        if pipe is None:
            target.execute()

    def _flush_regularly(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            self.flush()


@dataclass
class _Histogram:
    buckets: dict[float, float] = field(default_factory=dict)
    sum: float = 0.0

    def cumulative(self) -> list[tuple[str, float]]:
        total, rows = 0.0, []
        for bound in sorted(self.buckets):
            total += self.buckets[bound]
            rows.append(("+Inf" if bound == float("inf") else _label(bound), total))
        return rows


@dataclass
class _Recorded:
    """The ``segq:metrics`` hash, parsed."""

    answers: dict[tuple[str, str], float] = field(default_factory=dict)
    rate_limited: dict[str, float] = field(default_factory=dict)
    budget_wait: dict[str, float] = field(default_factory=dict)
    budget_waits: dict[str, float] = field(default_factory=dict)
    histograms: dict[str, _Histogram] = field(default_factory=dict)

    @classmethod
    def parse(cls, fields: dict[str, str]) -> _Recorded:
        recorded = cls(histograms={name: _Histogram() for name in HISTOGRAM_BUCKETS})
        for name, bounds in HISTOGRAM_BUCKETS.items():
            recorded.histograms[name].buckets = dict.fromkeys([*bounds, float("inf")], 0.0)
        for name, raw in fields.items():
            try:
                recorded._add(name, float(raw))
            except ValueError:
                log.warning("ignoring malformed metrics field %r", name)
        return recorded

    def _add(self, name: str, value: float) -> None:
        head, _, rest = name.partition(":")
        if head == "upstream_answers":
            kind, _, status = rest.partition(":")
            self.answers[(kind, status)] = value
        elif head == "rate_limited":
            self.rate_limited[rest] = value
        elif head == "budget_wait_seconds":
            self.budget_wait[rest] = value
        elif head == "budget_waits":
            self.budget_waits[rest] = value
        elif head.endswith("_bucket") and head[: -len("_bucket")] in self.histograms:
            self.histograms[head[: -len("_bucket")]].buckets[float(rest)] = value
        elif head.endswith("_sum") and head[: -len("_sum")] in self.histograms:
            self.histograms[head[: -len("_sum")]].sum = value


class FleetCollector(Collector):
    """A ``prometheus_client`` collector that reads the fleet's numbers from Redis on each
    scrape (one pipelined round trip, plus a SCAN for budget keys every RATE_KEYS_RESCAN_S)."""

    def __init__(self, client: redis.Redis, *, rate_keys_rescan_s: float = RATE_KEYS_RESCAN_S):
        self.redis = client
        self.rate_keys_rescan_s = rate_keys_rescan_s
        self._rate_keys: list[tuple[str, str, str]] = []
        self._rate_keys_at = float("-inf")

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("segq_redis_up", "1 if this scrape could read Redis, else 0.")
        try:
            families = self._read()
        except redis.RedisError as exc:
            log.warning("metrics scrape could not read Redis: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _read(self) -> list[Metric]:
        rate_keys = self._budget_keys()
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(redis_keys.METRICS)
        pipe.hgetall(redis_keys.STATS)
        pipe.hgetall(redis_keys.FLEET)
        for key, _, _ in rate_keys:
            pipe.hget(key, "rate_per_min")
        metrics, stats, fleet, *rates = (_decoded(reply) for reply in pipe.execute())
        return [
            _jobs_family(stats),
            *_recorded_families(_Recorded.parse(metrics)),
            *_fleet_families(fleet),
            _rate_family(rate_keys, rates),
        ]

    def _budget_keys(self) -> list[tuple[str, str, str]]:
        """(key, account fingerprint, kind) of every budget hash; the ``:ok`` zsets never
        match the pattern, which ends with the kind."""
        if time.monotonic() - self._rate_keys_at < self.rate_keys_rescan_s:
            return self._rate_keys
        found = []
        for kind in get_args(RateKind):
            head, _, tail = redis_keys.rate("*", kind).partition("*")
            for key in self.redis.scan_iter(match=f"{head}*{tail}", count=SCAN_COUNT):
                name = _decoded(key)
                found.append((name, name[len(head) : len(name) - len(tail)], kind))
        self._rate_keys, self._rate_keys_at = sorted(found), time.monotonic()
        return self._rate_keys


def _decoded(value: Any) -> Any:
    """Replies as text, whether or not the client decodes responses."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, dict):
        return {_decoded(k): _decoded(v) for k, v in value.items()}
    return value


def _jobs_family(stats: dict[str, str]) -> Metric:
    jobs = GaugeMetricFamily(
        "segq_jobs", "Jobs in each state, expired records included.", labels=["state"]
    )
    for state in JobState:
        jobs.add_metric([state.value], float(stats.get(state.value, 0)))
    return jobs


def _recorded_families(recorded: _Recorded) -> Iterator[Metric]:
    answers = CounterMetricFamily(
        "segq_upstream_answers", "Segmind's answers by call and HTTP status.",
        labels=["kind", "http_status"],
    )  # fmt: skip
    for (kind, status), count in sorted(recorded.answers.items()):
        answers.add_metric([kind, status], count)
    yield answers
    yield _by_kind("segq_rate_limited", "429 answers by budget.", recorded.rate_limited)
    yield _by_kind("segq_budget_wait_seconds", "Seconds jobs waited for a budget slot.",
                   recorded.budget_wait)  # fmt: skip
    yield _by_kind("segq_budget_waits", "Times a job waited for a budget slot.",
                   recorded.budget_waits)  # fmt: skip
    for name, (metric, doc) in HISTOGRAM_METRICS.items():
        histogram = recorded.histograms[name]
        yield HistogramMetricFamily(
            metric, doc, buckets=histogram.cumulative(), sum_value=histogram.sum
        )


def _by_kind(name: str, doc: str, values: dict[str, float]) -> Metric:
    family = CounterMetricFamily(name, doc, labels=["kind"])
    for kind, value in sorted(values.items()):
        family.add_metric([kind], value)
    return family


def _fleet_families(fleet: dict[str, str]) -> Iterator[Metric]:
    paused = fleet.get("paused") == "1"
    yield GaugeMetricFamily(
        "segq_fleet_paused", "1 while the fleet submits nothing new.", value=int(paused)
    )
    if not paused:
        return
    if "since" in fleet:
        yield GaugeMetricFamily(
            "segq_fleet_paused_since_timestamp_seconds",
            "When the fleet paused (Unix time).",
            value=float(fleet["since"]),
        )
    info = GaugeMetricFamily(
        "segq_fleet_pause_info", "Why the fleet is paused.", labels=["reason", "manual"]
    )
    info.add_metric([fleet.get("reason", ""), fleet.get("manual", "0")], 1)
    yield info


def _rate_family(keys: list[tuple[str, str, str]], rates: list[str | None]) -> Metric:
    family = GaugeMetricFamily(
        "segq_fleet_rate_per_minute",
        "Calls per minute the fleet budget spends now.",
        labels=["account", "kind"],
    )
    for (_, account, kind), rate in zip(keys, rates, strict=True):
        if rate is not None:
            family.add_metric([account, kind], float(rate))
    return family
