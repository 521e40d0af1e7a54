"""Outputs saved by workers (SEGQ_DOWNLOAD_OUTPUTS, base64 images) under the names that
`segq wait --download` uses, with real worker processes and the sandbox."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from shared.job_model import JobState
from tests.support.segq_cli import enqueue_batch, run_segq

pytestmark = pytest.mark.integration

LINES = [
    {"prompt": "a harbour at dawn", "width": 96, "height": 64},
    {"prompt": "two kites", "width": 64, "height": 64, "image_format": "png", "batch_size": 2},
    {"prompt": "a fern", "width": 80, "height": 64, "image_format": "webp", "base64": True},
]


def decoded(path: Path) -> tuple[str, tuple[int, int]]:
    image = Image.open(io.BytesIO(path.read_bytes()))
    return image.format, image.size


def test_workers_download_outputs_named_by_line_and_wait_finds_them_already_there(make_fleet):
    # Given a worker that downloads outputs as jobs complete
    fleet = make_fleet(SEGQ_DOWNLOAD_OUTPUTS="true")
    results = fleet.tmp_path / "results"
    fleet.start_worker()
    # When a batch (one JPEG, two PNGs in one job, a base64 WebP) and a lone job complete
    ids = enqueue_batch(fleet.redis_url, "shots", LINES)
    [lone] = fleet.add([{"prompt": "a lone gull", "width": 64, "height": 64}])
    jobs = fleet.wait_all([*ids, lone], timeout_s=90)
    assert [job.state for job in jobs] == [JobState.COMPLETED] * 4, [j.error for j in jobs]
    # Then every image is in the results directory, named by line, whole and decodable
    assert {path.name: decoded(path) for path in results.iterdir()} == {
        "000001-shots.1.jpg": ("JPEG", (96, 64)),
        "000002-shots.2-0.png": ("PNG", (64, 64)),
        "000002-shots.2-1.png": ("PNG", (64, 64)),
        "000003-shots.3.webp": ("WEBP", (80, 64)),
        f"{lone}.jpg": ("JPEG", (64, 64)),
    }
    assert jobs[2].outputs == [str((results / "000003-shots.3.webp").resolve())]
    # And `segq wait --download` into that directory finds them all there, fetching nothing
    fetched = fleet.sandbox.truth(with_requests=False)["totals"]["media_fetches"]
    done = run_segq(fleet.env(), "wait", "shots", "--download", str(results))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "(0 new, 4 already there)" in done.stderr
    assert fleet.sandbox.truth(with_requests=False)["totals"]["media_fetches"] == fetched


def test_without_the_option_workers_write_only_base64_images(make_fleet):
    fleet = make_fleet()
    fleet.start_worker()
    ids = enqueue_batch(fleet.redis_url, "plain", LINES)
    jobs = fleet.wait_all(ids, timeout_s=90)
    assert [job.state for job in jobs] == [JobState.COMPLETED] * 3
    results = fleet.tmp_path / "results"
    assert [path.name for path in results.iterdir()] == ["000003-plain.3.webp"]
    assert all(url.startswith("http://") for url in jobs[1].outputs)
