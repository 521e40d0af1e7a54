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
from collections.abc import Iterable, Iterator
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx

from shared.http_deadline import deadline_transport
from shared.job_model import Job, JobState
from shared.output_files import Fetch, SavedOutputs, save_outputs
from shared.segmind_client import USER_AGENT, SegmindClient
from shared.settings import Settings

DOWNLOAD_THREADS = 8


@contextlib.contextmanager
def keyless_fetch(settings: Settings) -> Iterator[Fetch]:
    """``SegmindClient.download`` on a client that holds no API key at all: output URLs live on
    a CDN (or the sandbox), and nothing that only reads results needs the key."""
    http = httpx.Client(
        timeout=httpx.Timeout(settings.http_timeout_s),
        headers={"User-Agent": USER_AGENT},
        transport=deadline_transport(limits=httpx.Limits(max_connections=DOWNLOAD_THREADS)),
    )
    client = SegmindClient(http, settings.segmind_base_url, api_key=None)
    try:
        yield client.download
    finally:
        client.close()


class OutputDownloader:
    """Saves the images of completed jobs into ``directory``; ``finish()`` waits for them."""

    def __init__(self, directory: Path, fetch: Fetch, threads: int = DOWNLOAD_THREADS) -> None:
        self.directory = directory
        self._fetch = fetch
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="segq-download")
        self._taken: set[str] = set()
        self._lock = threading.Lock()
        self._saved = SavedOutputs()
        self._errors: list[BaseException] = []
        self._pending: set[Future[SavedOutputs]] = set()

    def __enter__(self) -> OutputDownloader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Leaves at once when the block failed (Ctrl-C): saves not started are dropped."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def save_jobs(self, jobs: Iterable[Job]) -> None:
        """Queues the saves of the completed jobs among ``jobs`` that were not queued before."""
        for job in jobs:
            if job.state is not JobState.COMPLETED or job.job_id in self._taken:
                continue
            self._taken.add(job.job_id)
            future = self._pool.submit(
                save_outputs, self.directory, job.job_id, job.line, job.params, job.outputs,
                self._fetch,
            )  # fmt: skip
            with self._lock:
                self._pending.add(future)
            future.add_done_callback(self._tally)

    @property
    def files_saved(self) -> int:
        """Images in the directory so far, written now or found there from an earlier run."""
        with self._lock:
            return len(self._saved.files)

    def finish(self, until: float = math.inf) -> SavedOutputs:
        """Waits for the queued saves until monotonic time ``until`` (a wait's timeout), then
        drops those not started; what was written, found, dropped, and could not be saved."""
        with self._lock:
            pending = set(self._pending)
        timeout_s = None if until == math.inf else max(0.0, until - time.monotonic())
        futures.wait(pending, timeout=timeout_s)
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._errors:
            raise self._errors[0]
        return self._saved

    def _tally(self, future: Future[SavedOutputs]) -> None:
        with self._lock:
            self._pending.discard(future)
            if future.cancelled():
                self._saved.dropped_jobs += 1
                return
            error = future.exception()
            if error is not None:
                self._errors.append(error)
            else:
                self._saved.add(future.result())
