"""What a completed job keeps of Segmind's output: URLs, and files for base64 images.

Base64 images are written to ``results_dir`` and their paths stored in ``outputs`` (never
silently dropped: a Redis record is no place for megabytes). With ``download_outputs``, URL
outputs are also saved there as the job completes, because Segmind's URLs expire.
"""

from __future__ import annotations

import base64
import logging
from pathlib import Path

from shared.errors import TransientError
from shared.upstream_answers import ResultAnswer
from workers.runtime import Runtime

log = logging.getLogger("segq.jobs")


def collect_outputs(rt: Runtime, job_id: str, result: ResultAnswer) -> list[str]:
    """The job's outputs: its URLs, then the paths of its base64 images written to disk."""
    outputs = list(result.output_urls)
    if not result.output_base64 and not rt.settings.download_outputs:
        return outputs
    ext = _extension(rt, job_id)
    if result.output_base64:
        outputs += [
            str(_write(rt.settings.results_dir, f"{job_id}-{i}.{ext}", base64.b64decode(data)))
            for i, data in enumerate(result.output_base64)
        ]
    if rt.settings.download_outputs:
        for i, url in enumerate(result.output_urls):
            _download(rt, url, f"{job_id}-{i}.{ext}")
    return outputs


def _download(rt: Runtime, url: str, name: str) -> None:
    try:
        _write(rt.settings.results_dir, name, rt.client.download(url))
    except TransientError as exc:
        log.warning("could not download %s: %s (the URL stays in outputs)", url, exc)


def _write(directory: Path, name: str, content: bytes) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = (directory / name).resolve()
    tmp = path.with_suffix(path.suffix + ".part")
    tmp.write_bytes(content)
    tmp.replace(path)
    return path


def _extension(rt: Runtime, job_id: str) -> str:
    fmt = rt.store.get_job(job_id).params.get("image_format", "jpeg")
    return "jpg" if fmt == "jpeg" else str(fmt)
