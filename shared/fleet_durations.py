"""How long jobs take upstream, learned by each worker and shared through Redis.

Each worker process learns from the jobs it finishes (``DurationEstimate``) and schedules its
polls from that. Kept only in memory, the estimate would restart from the 2 s prior in every
new process: after a deploy, or in a worker added to a busy fleet, every job in flight would
be polled as if it took 2 s (for 30 s jobs, some fifteen polls each instead of two or three,
all spent from the account's budget). So a worker writes its estimate to ``segq:durations``
at most once a second, and a new one starts from the fleet's.

The writes are last-writer-wins: every worker estimates the same upstream, so any recent
estimate is a good start, and each process then goes on learning from its own jobs.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable

import redis

from shared import redis_keys
from shared.upstream_timing import DurationEstimate, next_poll_delay_s

log = logging.getLogger("segq.durations")

SHARE_EVERY_S = 1.0
"""A worker writes its estimate at most this often (one HSET, after a job finishes)."""

SHARED_TTL_S = 7 * 86_400
"""An estimate nobody renewed for a week is forgotten (the model or its load may have changed)."""

SEED_RETRY_S = 5.0
"""While Redis is away, the fleet's estimate is asked for again at most this often: every
poll delay is computed under one lock, and a read that times out must not hold all of them."""

FIELDS = ("mean_s", "deviation_s", "count")
"""The ``DurationEstimate`` attributes shared, under the same names in ``segq:durations``."""


class FleetDurations:
    """One worker's duration estimate, seeded from and shared with the fleet (thread-safe:
    tasks run in threads)."""

    def __init__(self, client: redis.Redis, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.redis = client
        self.clock = clock
        self.estimate = DurationEstimate()
        self.lock = threading.Lock()
        self._shared_at: float | None = None
        self._seed_tried_at: float | None = None
        self._seeded = False

    def observe(self, seconds: float) -> None:
        """Learns from one finished job, and shares the estimate if it is due."""
        with self.lock:
            self._seed_once()
            self.estimate.observe(seconds)
            now = self.clock()
            if self._shared_at is not None and now - self._shared_at < SHARE_EVERY_S:
                return
            self._shared_at = now
            fields = {name: getattr(self.estimate, name) for name in FIELDS}
        try:
            with self.redis.pipeline(transaction=False) as pipe:
                pipe.hset(redis_keys.DURATIONS, mapping=fields)
                pipe.expire(redis_keys.DURATIONS, SHARED_TTL_S)
                pipe.execute()
        except redis.RedisError as exc:  # the estimate only saves polls: never fail a job
            log.warning("duration estimate not shared: %s", exc)

    def next_poll_delay_s(self, elapsed_s: float, polls: int, min_s: float, max_s: float) -> float:
        """``upstream_timing.next_poll_delay_s`` with this worker's estimate."""
        with self.lock:
            self._seed_once()
            return next_poll_delay_s(elapsed_s, self.estimate, polls, min_s=min_s, max_s=max_s)

    def _seed_once(self) -> None:
        """Starts from the fleet's estimate, if there is one, before this process's first use
        (not at start-up: a worker must come up while Redis is away)."""
        if self._seeded:
            return
        now = self.clock()
        if self._seed_tried_at is not None and now - self._seed_tried_at < SEED_RETRY_S:
            return
        self._seed_tried_at = now
        try:
            shared = self.redis.hmget(redis_keys.DURATIONS, FIELDS)
        except redis.RedisError as exc:
            log.warning("fleet duration estimate not read yet: %s", exc)
            return
        self._seeded = True
        if self.estimate.count or None in shared:
            return
        mean_s, deviation_s, count = (float(value) for value in shared)
        if all(math.isfinite(v) and v >= 0 for v in (mean_s, deviation_s)) and count >= 1:
            self.estimate.mean_s, self.estimate.deviation_s = mean_s, deviation_s
            self.estimate.count = int(count)
