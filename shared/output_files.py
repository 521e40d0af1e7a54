"""A completed job's images as files a person can match to their input lines, saved once.

Two places save outputs, and both come here so the names and the rules cannot drift apart: a
worker with ``SEGQ_DOWNLOAD_OUTPUTS`` (into ``SEGQ_RESULTS_DIR`` as each job completes, and
always for base64 outputs) and ``segq wait --download DIR`` / ``segq demo``.

Names: ``<line>-<job_id>[-<n>].<ext>`` for a job of a batch (the line zero-padded so a listing
sorts in file order), ``<job_id>[-<n>].<ext>`` for a job of no batch; ``-<n>`` (from 0, the
output's index) only when the job has more than one image. A name depends on nothing but the
job, so saving again finds the file already there and fetches nothing: re-runs never duplicate.

Files are written to ``<name>.<pid>-<thread>.part`` and renamed into place, so a file with its
final name is always whole (a crash leaves only a ``.part`` behind), also when two writers save
the same name at once (a poll republished after its lease ran out while the first one was still
downloading, or ``segq wait --download`` next to such a worker): each renames its own whole file.
A ``.part`` a killed writer left is removed by a later writer once it is ``STALE_PART_S`` old.

URL outputs are fetched with ``SegmindClient.download``, which never sends the API key (the
URLs point at Segmind's CDN, or the sandbox's media) and follows redirects. Segmind's URLs
expire an hour after the job ends: save them before that.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.errors import UpstreamError
from shared.upstream_answers import is_image

LINE_DIGITS = 6
"""Zero-padding of the line in a name: listings sort in line order up to 999,999 lines."""
URL_EXPIRY_NOTE = "Segmind's result URLs expire an hour after each job ends"
STALE_PART_S = 3600.0
"""A ``.part`` file untouched this long is a dead writer's: a live one writes its image in one
call, in seconds at most. Also how often a process looks for them in a directory it writes to
(one listing of the directory, so not on every write)."""

_parts_swept_at: dict[Path, float] = {}
"""When this process last removed stale ``.part`` files from each directory it writes to."""

Fetch = Callable[[str], bytes]
"""The bytes of an output URL, or an ``UpstreamError`` (``SegmindClient.download``)."""


def output_extension(params: Mapping[str, Any]) -> str:
    """The file extension of a job's images, from the format it asked for."""
    image_format = str(params.get("image_format") or "jpeg")
    return "jpg" if image_format == "jpeg" else image_format


def output_names(job_id: str, line: int | None, params: Mapping[str, Any], count: int) -> list[str]:
    """File names of a job's ``count`` images, in output order."""
    stem = job_id if line is None else f"{line:0{LINE_DIGITS}d}-{job_id}"
    ext = output_extension(params)
    if count == 1:
        return [f"{stem}.{ext}"]
    return [f"{stem}-{index}.{ext}" for index in range(count)]


def is_url(output: str) -> bool:
    """URL outputs (Segmind's CDN, the sandbox) versus paths of base64 images a worker wrote.
    The scheme in any case, as ``upstream_answers.is_http_url`` takes it into ``outputs``: an
    ``HTTP://`` URL read as a path was a local file the upstream named."""
    return output[:8].lower().startswith(("https://", "http://"))


@dataclass
class SavedOutputs:
    """What one or more saves did: files written now, files found already there, failures,
    and whether saves were dropped unstarted (``cut_short``: a wait's timeout ran out)."""

    written: list[Path] = field(default_factory=list)
    present: list[Path] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    cut_short: bool = False

    @property
    def files(self) -> list[Path]:
        return self.written + self.present

    def add(self, other: SavedOutputs) -> None:
        self.written += other.written
        self.present += other.present
        self.failures += other.failures
        self.cut_short |= other.cut_short


def write_file(directory: Path, name: str, content: bytes) -> Path:
    """Writes ``directory/name`` whole or not at all (see the module docstring)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = (directory / name).resolve()
    remove_stale_parts(path.parent, time.time())
    partial = path.with_name(f"{path.name}.{os.getpid()}-{threading.get_ident()}.part")
    try:
        partial.write_bytes(content)
        partial.replace(path)
    except BaseException:  # a full disk, a task's time limit: no half image is kept
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        raise
    return path


def remove_stale_parts(directory: Path, now: float) -> None:
    """Removes the ``.part`` files of writers killed mid-write (nothing else ever would: each
    writer's part has a name of its own), at most once per ``STALE_PART_S`` per directory."""
    if now - _parts_swept_at.get(directory, -STALE_PART_S) < STALE_PART_S:
        return
    _parts_swept_at[directory] = now
    with contextlib.suppress(OSError), os.scandir(directory) as entries:
        for entry in entries:
            if entry.name.endswith(".part") and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(OSError):  # gone already, or not ours to remove
                    if now - entry.stat(follow_symlinks=False).st_mtime > STALE_PART_S:
                        os.unlink(entry.path)


def save_output(directory: Path, name: str, output: str, fetch: Fetch) -> SavedOutputs:
    """Saves one output (a URL to fetch, or a worker's file to copy) as ``directory/name``,
    unless a file of that name is already there."""
    saved = SavedOutputs()
    path = (directory / name).resolve()
    if path.exists():
        saved.present.append(path)
        return saved
    try:
        content = fetch(output) if is_url(output) else Path(output).read_bytes()
    except UpstreamError as exc:
        saved.failures.append(f"{name}: {output}: {exc} ({URL_EXPIRY_NOTE})")
    except OSError as exc:
        saved.failures.append(
            f"{name}: cannot read {output} ({exc.strerror}): base64 images are written to the "
            "worker's SEGQ_RESULTS_DIR, on the worker's machine"
        )
    else:
        if is_url(output) and not is_image(content):  # an error page served with a 200, say
            saved.failures.append(f"{name}: {output}: not an image (it starts {content[:16]!r})")
        else:
            saved.add(written(directory, name, content))
    return saved


def written(directory: Path, name: str, content: bytes) -> SavedOutputs:
    """``write_file``, a directory that cannot take the file (full, read-only, not a
    directory) being a failure of this image, as an expired URL is, not of the whole save."""
    saved = SavedOutputs()
    try:
        saved.written.append(write_file(directory, name, content))
    except OSError as exc:
        saved.failures.append(f"{name}: cannot write it into {directory} ({exc.strerror or exc})")
    return saved


def named_outputs(
    job_id: str, line: int | None, params: Mapping[str, Any], outputs: list[str]
) -> list[tuple[str, str]]:
    """Each output of one job with its file name (``output_names``), to save one by one."""
    return list(zip(output_names(job_id, line, params, len(outputs)), outputs, strict=True))
