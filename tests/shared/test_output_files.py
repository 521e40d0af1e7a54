"""Output file names and the write-once rule (no Redis, no network: ``fetch`` is a function)."""

from __future__ import annotations

import os
import threading
import time

import pytest

from shared.errors import TransientError
from shared.output_files import (
    Fetch,
    SavedOutputs,
    named_outputs,
    output_names,
    save_output,
    write_file,
)

JPEG = b"\xff\xd8\xff\xe0" + b"JFIF" + bytes(8)


def save_outputs(directory, job_id, line, params, outputs: list[str], fetch: Fetch) -> SavedOutputs:
    """Every output of one job, saved as ``segq wait --download`` does, one by one."""
    saved = SavedOutputs()
    for name, output in named_outputs(job_id, line, params, outputs):
        saved.add(save_output(directory, name, output, fetch))
    return saved


@pytest.mark.parametrize(
    ("job_id", "line", "params", "count", "names"),
    [
        ("b1.7", 7, {}, 1, ["000007-b1.7.jpg"]),
        ("b1.12", 12, {"image_format": "png"}, 2, ["000012-b1.12-0.png", "000012-b1.12-1.png"]),
        ("t0abc", None, {"image_format": "webp"}, 1, ["t0abc.webp"]),
        ("t0abc", None, {"image_format": "jpeg"}, 3, ["t0abc-0.jpg", "t0abc-1.jpg", "t0abc-2.jpg"]),
    ],
)
def test_names_carry_the_line_then_the_job_and_an_index_only_for_several_images(
    job_id, line, params, count, names
):
    assert output_names(job_id, line, params, count) == names


def test_a_second_save_finds_the_file_and_fetches_nothing(tmp_path):
    fetched: list[str] = []

    def fetch(url: str) -> bytes:
        fetched.append(url)
        return JPEG

    first = save_outputs(tmp_path, "b.1", 1, {}, ["https://cdn.example/a.jpg"], fetch)
    again = save_outputs(tmp_path, "b.1", 1, {}, ["https://cdn.example/a.jpg"], fetch)
    assert [p.name for p in first.written] == ["000001-b.1.jpg"] and not first.present
    assert [p.name for p in again.present] == ["000001-b.1.jpg"] and not again.written
    assert fetched == ["https://cdn.example/a.jpg"]
    assert (tmp_path / "000001-b.1.jpg").read_bytes() == JPEG
    assert [p.name for p in tmp_path.iterdir()] == ["000001-b.1.jpg"]


def test_a_worker_file_is_copied_and_failures_say_why_without_stopping_the_rest(tmp_path):
    worker_file = tmp_path / "worker" / "000002-b.2-1.png"
    worker_file.parent.mkdir()
    worker_file.write_bytes(b"png bytes")

    def expired(url: str) -> bytes:
        raise TransientError("download answered 404", 404)

    saved = save_outputs(
        tmp_path / "out", "b.2", 2, {"image_format": "png"},
        ["https://cdn.example/gone.png", str(worker_file), str(tmp_path / "missing.png")], expired,
    )  # fmt: skip
    assert [p.name for p in saved.written] == ["000002-b.2-1.png"]
    assert (tmp_path / "out" / "000002-b.2-1.png").read_bytes() == b"png bytes"
    expiry, missing = saved.failures
    assert "000002-b.2-0.png" in expiry and "404" in expiry and "expire an hour" in expiry
    assert "000002-b.2-2.png" in missing and "SEGQ_RESULTS_DIR" in missing


def test_a_fetched_page_that_is_not_an_image_is_a_failure_not_a_file(tmp_path):
    page = b"<html><title>Access denied</title></html>"
    saved = save_outputs(tmp_path, "b.3", 3, {}, ["https://cdn.example/a.jpg"], lambda url: page)
    assert not saved.written and not list(tmp_path.iterdir())
    [failure] = saved.failures
    assert failure.startswith("000003-b.3.jpg: https://cdn.example/a.jpg: not an image (it starts")


def test_a_url_whose_scheme_is_in_capitals_is_fetched_not_read_as_a_local_path(
    tmp_path, monkeypatch
):
    # Path("HTTP://../etc/x") is the relative path HTTP:/../etc/x: a file of this machine.
    (tmp_path / "HTTP:").mkdir()
    (tmp_path / "local.png").write_bytes(b"a local file")
    monkeypatch.chdir(tmp_path)
    saved = save_outputs(tmp_path / "out", "t0abc", None, {}, ["HTTP://../local.png"],
                         lambda url: JPEG)  # fmt: skip
    assert [p.read_bytes() for p in saved.written] == [JPEG]


def test_two_writers_of_one_name_at_once_each_rename_a_whole_file(tmp_path):
    # A poll republished while the first still downloaded wrote the same <name>.part: one
    # rename took the other's file away (FileNotFoundError ended the task) or a half file.
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def write(content: bytes) -> None:
        start.wait()
        try:
            for _ in range(50):
                write_file(tmp_path, "000001-b.1.jpg", content)
        except OSError as exc:
            errors.append(exc)

    writers = [threading.Thread(target=write, args=(bytes([n]) * 200_000,)) for n in range(8)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    assert errors == []
    content = (tmp_path / "000001-b.1.jpg").read_bytes()
    assert content == content[:1] * 200_000


def test_a_directory_that_cannot_take_the_file_is_a_failure_of_that_image(tmp_path):
    not_a_directory = tmp_path / "images"
    not_a_directory.write_bytes(b"")  # or full, or read-only: the write raises OSError
    saved = save_outputs(not_a_directory, "b.4", 4, {}, ["https://cdn.example/a.jpg"],
                         lambda url: JPEG)  # fmt: skip
    assert not saved.written
    [failure] = saved.failures
    assert failure.startswith(f"000004-b.4.jpg: cannot write it into {not_a_directory} (")


def test_a_killed_writers_part_is_removed_once_stale_and_a_live_writers_is_kept(tmp_path):
    # Given the .part files of a writer killed mid-write a day ago, and of one writing now
    stale = tmp_path / "000001-b.1.jpg.4242-1.part"
    live = tmp_path / "000002-b.2.jpg.4343-1.part"
    old_image = tmp_path / "000003-b.3.jpg"
    for path in (stale, live, old_image):
        path.write_bytes(b"bytes")
    long_ago = time.time() - 86_400
    os.utime(stale, (long_ago, long_ago))
    os.utime(old_image, (long_ago, long_ago))
    # When another image is written into the directory
    write_file(tmp_path, "000004-b.4.jpg", JPEG)
    # Then only the stale part is gone
    names = sorted(path.name for path in tmp_path.iterdir())
    assert names == ["000002-b.2.jpg.4343-1.part", "000003-b.3.jpg", "000004-b.4.jpg"]
