"""`segq wait` as a user runs it: a subprocess on a real Redis, real workers, the sandbox."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys

import pytest
from PIL import Image

from shared import redis_keys
from tests.support.fleet import REPO, Fleet, segq_env
from tests.support.segq_cli import enqueue_batch, run_segq

pytestmark = pytest.mark.integration

FORMATS = ("jpeg", "png", "webp")
PIL_FORMATS = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}


def small_image(n: int) -> dict:
    """Line n's parameters: small images (quick to render), the three formats in turn."""
    return {"prompt": f"a lighthouse, study {n}", "width": 128, "height": 96,
            "image_format": FORMATS[n % 3]}  # fmt: skip


def test_wait_download_saves_every_image_of_a_200_line_batch_named_by_line(make_fleet, tmp_path):
    # Given a 200-line batch in three formats, and one worker on the sandbox
    fleet: Fleet = make_fleet()
    enqueue_batch(fleet.redis_url, "posters", [small_image(n) for n in range(1, 201)])
    fleet.start_worker(concurrency=16)
    # When a user waits for it, downloading into a folder
    out = tmp_path / "images"
    done = run_segq(fleet.env(), "wait", "posters", "--download", str(out))
    # Then it exits 0 with 200 decodable images, one per line, named by line and job id
    assert done.returncode == 0, done.stdout + done.stderr
    names = sorted(path.name for path in out.iterdir())
    ext = {"jpeg": "jpg", "png": "png", "webp": "webp"}
    assert names == [f"{n:06d}-posters.{n}.{ext[FORMATS[n % 3]]}" for n in range(1, 201)]
    for path in out.iterdir():
        image = Image.open(io.BytesIO(path.read_bytes()))
        assert (image.format, image.size) == (PIL_FORMATS[path.suffix[1:]], (128, 96))
    assert "expire an hour" in done.stderr
    assert "200 images in" in done.stderr and "(200 new, 0 already there)" in done.stderr
    # And running it again fetches nothing: every image is already there
    fetched = fleet.sandbox.truth(with_requests=False)["totals"]["media_fetches"]
    again = run_segq(fleet.env(), "wait", "posters", "--download", str(out))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "(0 new, 200 already there)" in again.stderr
    assert fleet.sandbox.truth(with_requests=False)["totals"]["media_fetches"] == fetched
    assert len(list(out.iterdir())) == 200


def test_wait_exits_1_when_a_job_of_the_batch_failed_and_prints_the_batch(make_fleet):
    # Given a batch of three whose second prompt the sandbox always fails
    fleet = make_fleet()
    prompts = ["a pear", "a crowd [fail]", "a kettle"]
    enqueue_batch(
        fleet.redis_url, "fruit", [{"prompt": p, "width": 64, "height": 64} for p in prompts]
    )
    fleet.start_worker()
    # When a user waits for it with --json
    done = run_segq(fleet.env(), "wait", "fruit", "--json")
    # Then the exit status is 1 and stdout holds the batch object with the failure
    assert done.returncode == 1, done.stdout + done.stderr
    batch = json.loads(done.stdout)
    assert batch["batch_id"] == "fruit"
    assert (batch["counts"]["completed"], batch["counts"]["failed"]) == (2, 1)
    states = {job["line"]: job["state"] for job in batch["jobs"]}
    assert states == {1: "completed", 2: "failed", 3: "completed"}
    assert "2 completed, 1 failed" in done.stderr


def test_wait_ends_with_status_1_when_a_jobs_record_expired_before_a_worker_took_it(make_fleet):
    # Given a batch of two whose second job's record expired while it was queued
    fleet = make_fleet()
    enqueue_batch(fleet.redis_url, "outlived", [small_image(n) for n in (1, 2)])
    fleet.store.redis.delete(redis_keys.job("outlived.2"))  # as its retention would
    fleet.start_worker(concurrency=2)
    # When a user waits for the batch
    done = run_segq(fleet.env(), "wait", "outlived", "--timeout", "60", "--json")
    # Then the wait ends (not at its timeout) with status 1: one job completed, one failed
    assert done.returncode == 1, done.stdout + done.stderr
    summary = json.loads(done.stdout)
    assert summary["counts"]["completed"] == 1 and summary["counts"]["failed"] == 1
    assert summary["failures_by_kind"] == {"expired_in_queue": 1}
    assert summary["expired_records"] == 1
    [reason] = summary["failure_reasons"]
    assert (reason["kind"], reason["jobs"]) == ("expired_in_queue", 1)


def test_wait_on_one_job_exits_0_and_prints_the_job(make_fleet):
    fleet = make_fleet()
    [job_id] = fleet.add([{"prompt": "a lone heron", "width": 64, "height": 64}])
    fleet.start_worker()
    done = run_segq(fleet.env(), "wait", job_id, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    job = json.loads(done.stdout)
    assert (job["job_id"], job["state"], len(job["outputs"])) == (job_id, "completed", 1)


def test_wait_exits_2_when_the_timeout_runs_out_first(redis_url, tmp_path):
    # Given a batch that no worker runs
    enqueue_batch(redis_url, "idle", [{"prompt": f"a clock {n}"} for n in range(3)])
    env = segq_env(SEGQ_REDIS_URL=redis_url, SEGQ_RESULTS_DIR=str(tmp_path))
    # When a user waits half a second for it
    done = run_segq(env, "wait", "idle", "--timeout", "0.5", timeout_s=60)
    # Then the exit status is 2 and the output says how many jobs had not ended
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Timed out with 3 jobs not ended yet" in done.stderr


def test_wait_on_an_unknown_id_says_so(redis_url):
    done = run_segq(segq_env(SEGQ_REDIS_URL=redis_url), "wait", "no-such-batch", timeout_s=60)
    assert done.returncode == 1
    assert "no job or batch no-such-batch" in done.stderr


def test_a_download_directory_that_cannot_be_made_is_a_listed_failure_not_a_traceback(
    make_fleet, tmp_path
):
    fleet = make_fleet()
    [job_id] = fleet.add([{"prompt": "a lone heron", "width": 64, "height": 64}])
    fleet.start_worker()
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    done = run_segq(fleet.env(), "wait", job_id, "--download", str(a_file / "images"))
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    images = a_file / "images"
    assert last == f"  not saved: {job_id}.jpg: cannot write it into {images} (Not a directory)"


def test_a_wait_interrupted_with_ctrl_c_exits_130_not_as_a_failed_job(make_fleet):
    fleet = make_fleet()  # no worker: the job stays queued
    [job_id] = fleet.add([{"prompt": "a lone heron"}])
    argv = [sys.executable, "-m", "producer", "wait", job_id]
    with subprocess.Popen(argv, env=fleet.env(), cwd=REPO, stderr=subprocess.PIPE,
                          text=True) as waiting:  # fmt: skip
        try:
            assert waiting.stderr is not None
            assert f"{job_id}: 0/1 ended" in waiting.stderr.readline()  # it is waiting
            waiting.send_signal(signal.SIGINT)
            assert waiting.wait(timeout=30) == 130
            assert "Interrupted." in waiting.stderr.read()
        finally:
            waiting.kill()
