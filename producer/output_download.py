"""``segq wait --download``'s saving: completed jobs' images, in the background, each job once.

Names, fetching and the write-once rule are ``shared.output_files``'s (the same as the
workers' ``SEGQ_DOWNLOAD_OUTPUTS``); this module only runs the saves on a few threads, so a
slow CDN never stalls the progress bar, and keeps the tally the bar and the summary show.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx

from shared.http_deadline import deadline_client
from shared.job_model import Job, JobState
from shared.output_files import Fetch, SavedOutputs, named_outputs, save_output
from shared.segmind_client import USER_AGENT, SegmindClient
from shared.settings import Settings

DOWNLOAD_THREADS = 8
QUEUED_PER_THREAD = 4
FINISH_TICK_S = 0.25


@contextlib.contextmanager
def keyless_fetch(settings: Settings) -> Iterator[Fetch]:
    """``SegmindClient.download`` on a client that holds no API key at all: output URLs live on
    a CDN (or the sandbox), and nothing that only reads results needs the key."""
    http = deadline_client(
        timeout=httpx.Timeout(settings.http_timeout_s),
        headers={"User-Agent": USER_AGENT},
        limits=httpx.Limits(max_connections=DOWNLOAD_THREADS),
    )
    client = SegmindClient(http, settings.segmind_base_url, api_key=None)
    try:
        yield client.download
    finally:
        client.close()


class OutputDownloader:
    """Saves the images of completed jobs into ``directory``; ``finish()`` waits for them.

    At most ``QUEUED_PER_THREAD`` saves a thread wait in the pool; the jobs behind them stay in
    their iterables (a batch's jobs are read from Redis a chunk at a time), so memory stays
    flat however many jobs completed while nobody listened. Each ``save_jobs`` call tops the
    pool up for a given time at most and returns: the progress bar never waits for the
    downloads, nor for a read of a whole big batch."""

    def __init__(self, directory: Path, fetch: Fetch, threads: int = DOWNLOAD_THREADS) -> None:
        self.directory = directory
        self._fetch = fetch
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="segq-download")
        self._room = threads * QUEUED_PER_THREAD
        self._backlog: deque[Iterator[Job]] = deque()
        self._taken: set[str] = set()
        self._lock = threading.Lock()
        self._saved = SavedOutputs()
        self._errors: list[BaseException] = []
        self._pending: set[Future[SavedOutputs]] = set()

    def __enter__(self) -> OutputDownloader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        """When the block failed (Ctrl-C): saves not started are dropped, and those under way
        (each bounded by the call's budget) end first."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def save_jobs(self, jobs: Iterable[Job], until: float = math.inf) -> None:
        """Saves the completed jobs among ``jobs`` not taken before: queues them as the pool
        has room, reading ``jobs`` (and those given before) up to monotonic time ``until``;
        the rest waits for the next call."""
        self._backlog.append(iter(jobs))
        self._top_up(until)

    @property
    def jobs_taken(self) -> int:
        """Completed jobs whose images were queued to be saved (or found there)."""
        return len(self._taken)

    @property
    def files_saved(self) -> int:
        """Images in the directory so far, written now or found there from an earlier run."""
        with self._lock:
            return len(self._saved.files)

    def finish(self, until: float = math.inf) -> SavedOutputs:
        """Saves every job given, or those started by monotonic time ``until`` (a wait's
        timeout; the rest are dropped, ``cut_short``, for a later run to fetch); what was
        written, found, and could not be saved."""
        while True:
            self._top_up(until)
            with self._lock:
                pending = set(self._pending)
            if not pending and not self._backlog:
                break
            if time.monotonic() >= until:
                cancelled = [future for future in pending if future.cancel()]
                with self._lock:
                    self._saved.cut_short = bool(cancelled or self._backlog)
                break
            futures.wait(pending, timeout=FINISH_TICK_S, return_when=futures.FIRST_COMPLETED)
        self._pool.shutdown(wait=True)
        if self._errors:
            raise self._errors[0]
        return self._saved

    def _top_up(self, until: float) -> None:
        while self._backlog and time.monotonic() < until:
            with self._lock:
                if len(self._pending) >= self._room:
                    return
            job = next(self._backlog[0], None)
            if job is None:
                self._backlog.popleft()
            elif job.state is JobState.COMPLETED and job.job_id not in self._taken:
                self._queue(job)

    def _queue(self, job: Job) -> None:
        """One save per image, so that ``finish``'s deadline drops a job's images not started
        too: each may take the whole HTTP timeout, and a job has up to 10."""
        self._taken.add(job.job_id)
        for name, output in named_outputs(job.job_id, job.line, job.params, job.outputs):
            future = self._pool.submit(save_output, self.directory, name, output, self._fetch)
            with self._lock:
                self._pending.add(future)
            future.add_done_callback(self._tally)

    def _tally(self, future: Future[SavedOutputs]) -> None:
        with self._lock:
            self._pending.discard(future)
            if future.cancelled():
                return
            error = future.exception()
            if error is not None:
                self._errors.append(error)
            else:
                self._saved.add(future.result())
