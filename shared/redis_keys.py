"""Every Redis key segq uses, built here and nowhere else.

key                                 type    TTL, and who writes it
----------------------------------  ------  ---------------------------------------------------
segq:job:{job_id}                   hash    retention, renewed when the job ends, and while
                                            it is followed upstream kept that long past its
                                            next due time; the producer creates it, tasks
                                            change single fields via Lua
segq:batch:{batch_id}               hash    retention, renewed on change and kept as long as
                                            its jobs followed upstream; producer creates it,
                                            every transition of its jobs moves its counters
segq:batch:{batch_id}:failed        set     as its batch; ids of the batch's failed jobs
segq:batch:{batch_id}:lines         string  as its batch; a bit per line that made a job, so a
                                            re-run does not make a job whose record expired
                                            again (add_jobs)
segq:lane:interactive               list    none (drains); producer pushes, dispatcher pops
segq:lane:bulk:{batch_id|_}         list    none (drains); producer pushes, dispatcher pops
segq:lanes                          list    none; ring of bulk lanes with work (dispatcher)
segq:dispatched                     zset    none; job -> end of its submit lease (dispatcher)
segq:due                            zset    none; job -> next poll, retry or end of poll lease
segq:polling                        zset    none; job -> end of its poll lease, while its poll
                                            task waits in the broker (the poll window)
segq:inflight                       zset    none; job -> submitted_at, until the job ends
segq:notify                         zset    none; job -> when its callback/webhook is due (the
                                            ending script adds it, the dispatcher leases it,
                                            the notify task reschedules or removes it)
segq:notify:lanes                   set     none; cancelled batches whose queued jobs still wait
                                            to be told (cancel_batch adds, dispatcher drains)
segq:notify:lane:{batch_id}         list    retention; those jobs: the batch's bulk lane,
                                            renamed when the batch was cancelled
segq:reply:{token}                  hash    1 minute, or the retention if shorter (job.lua's
                                            REPLY_KEPT_S); what a producer's call changed, a
                                            field per script call (add_jobs, retry_job), so a
                                            call that Redis ran but whose reply a broken
                                            connection lost is answered the same when
                                            redis-py sends it again (RECONNECTS)
segq:events:{job_id}                pubsub  -; the job's end, published by the ending script;
                                            a batch's waiters match segq:events:{batch_id}.*
segq:stats                          hash    none; jobs per state, fleet-wide (job scripts)
segq:metrics                        hash    none; counters and histogram buckets (workers)
segq:fleet                          hash    none; pause state and interactive streak
segq:durations                      hash    7 days, renewed; how long jobs take upstream, as
                                            the last worker to share it estimated (workers)
segq:rate:{fingerprint}:{kind}      hash    1 day, renewed; the fleet budget (rate.lua)
segq:rate:{fingerprint}:{kind}:ok   zset    2 minutes; accepted calls of the last minute
segq:rate_limited                   zset    1 day, renewed; budget key -> its last 429, written
                                            by rate_limited.lua, so `segq status` and `segq
                                            resume` find holds and learned rates without the
                                            API key (a producer need not have it)

``fingerprint`` is ``Settings.api_key_fingerprint()`` (a hash), never the key itself;
``kind`` is ``submit`` or ``poll``.
"""

from __future__ import annotations

from typing import Literal, cast

PREFIX = "segq:"

LaneKind = Literal["interactive", "bulk"]
RateKind = Literal["submit", "poll"]

INTERACTIVE_LANE = PREFIX + "lane:interactive"
LANE_RING = PREFIX + "lanes"
DISPATCHED = PREFIX + "dispatched"
DUE = PREFIX + "due"
POLLING = PREFIX + "polling"
INFLIGHT = PREFIX + "inflight"
NOTIFY = PREFIX + "notify"
NOTIFY_LANES = PREFIX + "notify:lanes"
STATS = PREFIX + "stats"
METRICS = PREFIX + "metrics"
FLEET = PREFIX + "fleet"
DURATIONS = PREFIX + "durations"
RATE_LIMITED = PREFIX + "rate_limited"

SINGLE_JOBS_LANE = "_"
"""The bulk lane of jobs that belong to no batch."""


JOB_PREFIX = PREFIX + "job:"
BATCH_PREFIX = PREFIX + "batch:"
BULK_LANE_PREFIX = PREFIX + "lane:bulk:"
EVENTS_PREFIX = PREFIX + "events:"
NOTIFY_LANE_PREFIX = PREFIX + "notify:lane:"
REPLY_PREFIX = PREFIX + "reply:"


def job(job_id: str) -> str:
    return JOB_PREFIX + job_id


def batch(batch_id: str) -> str:
    return BATCH_PREFIX + batch_id


def batch_failed(batch_id: str) -> str:
    return f"{BATCH_PREFIX}{batch_id}:failed"


def bulk_lane(batch_id: str | None) -> str:
    return BULK_LANE_PREFIX + (batch_id or SINGLE_JOBS_LANE)


def events(job_id: str) -> str:
    return EVENTS_PREFIX + job_id


def batch_events_pattern(batch_id: str) -> str:
    """The pattern of every end event of the batch's jobs (ids ``{batch_id}.{line}``); batch
    ids hold no glob characters (the producer checks), so it matches nothing else."""
    return f"{EVENTS_PREFIX}{batch_id}.*"


def script_layout(retention_s: int) -> list[str | int]:
    """The first ARGV entries of every job script (``shared/lua/layout.lua`` names them): the
    prefixes and fixed keys, so Lua builds keys from what this module says, and the retention."""
    return [
        JOB_PREFIX, BATCH_PREFIX, BULK_LANE_PREFIX, EVENTS_PREFIX, INTERACTIVE_LANE, LANE_RING,
        DISPATCHED, DUE, INFLIGHT, STATS, FLEET, POLLING, NOTIFY, NOTIFY_LANES,
        NOTIFY_LANE_PREFIX, RATE_LIMITED, REPLY_PREFIX, retention_s,
    ]  # fmt: skip


def rate(fingerprint: str, kind: RateKind) -> str:
    return f"{PREFIX}rate:{fingerprint}:{kind}"


def rate_accepted(fingerprint: str, kind: RateKind) -> str:
    return f"{PREFIX}rate:{fingerprint}:{kind}:ok"


def rate_owner(key: str) -> tuple[str, RateKind]:
    """(fingerprint, kind) of a budget key built by ``rate``."""
    fingerprint, _, kind = key.removeprefix(f"{PREFIX}rate:").rpartition(":")
    return fingerprint, cast(RateKind, kind)
