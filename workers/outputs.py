"""What a completed job keeps of Segmind's output: URLs, and files for base64 images.

Base64 images are written to ``results_dir`` and their paths stored in ``outputs`` (never
silently dropped: a Redis record is no place for megabytes). With ``download_outputs``, URL
outputs are also saved there as the job completes, because Segmind's URLs expire after an
hour. Names and writing rules are ``shared.output_files``'s, the same as ``segq wait
--download``'s, so a later ``segq wait --download`` into the same directory fetches nothing.

The downloads share one budget, ``SEGQ_HTTP_TIMEOUT_S`` from the first: none starts after it,
and those left keep their URLs. A slow CDN would otherwise hold the poll as long as it likes;
past its lease, the job is polled (and its images fetched) a second time meanwhile, which the
budget makes rarer but cannot rule out (status, result and downloads each take up to that
timeout).
"""

from __future__ import annotations

import base64
import logging
import time

from shared.output_files import output_names, save_output, write_file
from shared.upstream_answers import MAX_OUTPUTS_KEPT, MAX_URL_CHARS, ResultAnswer
from workers.runtime import Runtime

log = logging.getLogger("segq.jobs")


def collect_outputs(rt: Runtime, job_id: str, result: ResultAnswer) -> list[str]:
    """The job's outputs: its URLs, then the paths of its base64 images written to disk."""
    if result.unrecognized_outputs:
        log.warning("job %s: %d output items were not kept (neither a URL nor an image, a "
                    "URL over %d characters, or past the %dth)", job_id,
                    result.unrecognized_outputs, MAX_URL_CHARS, MAX_OUTPUTS_KEPT)  # fmt: skip
    outputs = list(result.output_urls)
    if not result.output_base64 and not rt.settings.download_outputs:
        return outputs
    job = rt.store.get_job(job_id)
    count = len(result.output_urls) + len(result.output_base64)
    names = output_names(job_id, job.line, job.params, count)
    directory = rt.settings.results_dir
    if rt.settings.download_outputs:
        until = time.monotonic() + rt.settings.http_timeout_s
        for name, url in zip(names, result.output_urls, strict=False):
            if time.monotonic() >= until:
                log.warning("job %s: output %s not saved, the downloads' time was up; its URL "
                            "stays in outputs", job_id, name)  # fmt: skip
                continue
            for failure in save_output(directory, name, url, rt.client.download).failures:
                log.warning(
                    "job %s: output not saved, its URL stays in outputs: %s", job_id, failure
                )
    for name, data in zip(names[len(result.output_urls) :], result.output_base64, strict=True):
        outputs.append(str(write_file(directory, name, base64.b64decode(data))))
    return outputs
