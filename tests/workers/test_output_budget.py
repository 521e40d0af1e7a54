"""A worker's output downloads (SEGQ_DOWNLOAD_OUTPUTS) share one budget: a slow CDN must not
hold a poll past its lease, or the job is polled, and its images fetched, a second time."""

from __future__ import annotations

import time
from types import SimpleNamespace

from shared.job_model import Job, JobState
from shared.settings import load_settings
from shared.upstream_answers import ResultAnswer
from workers.outputs import collect_outputs

JPEG = b"\xff\xd8\xff\xe0JFIF" + bytes(8)


def test_downloads_start_only_within_the_budget_and_the_rest_keep_their_urls(tmp_path):
    settings = load_settings({}, download_outputs=True, http_timeout_s=0.3, results_dir=tmp_path)
    job = Job(job_id="b.1", state=JobState.RUNNING, created_at=0.0, line=1, params={})
    fetched: list[str] = []

    def slow_download(url: str) -> bytes:
        fetched.append(url)
        time.sleep(0.2)
        return JPEG

    rt = SimpleNamespace(settings=settings, store=SimpleNamespace(get_job=lambda _: job),
                         client=SimpleNamespace(download=slow_download))  # fmt: skip
    urls = [f"https://cdn.example/{n}.jpeg" for n in range(6)]
    outputs = collect_outputs(rt, "b.1", ResultAnswer(output_urls=urls))  # type: ignore[arg-type]
    assert outputs == urls  # every URL kept, saved or not
    assert 1 <= len(fetched) <= 2 and fetched == urls[: len(fetched)]  # 0.3 s: not six of 0.2 s
    saved = sorted(path.name for path in tmp_path.iterdir())
    assert saved == [f"000001-b.1-{n}.jpg" for n in range(len(fetched))]
