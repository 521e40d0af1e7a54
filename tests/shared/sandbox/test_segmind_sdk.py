"""The official `segmind` SDK (1.3.0, from PyPI) works against the sandbox unchanged."""

from __future__ import annotations

import io

import httpx
import pytest
from PIL import Image
from segmind import InferenceFailed, SegmindClient, SegmindError  # type: ignore[import-untyped]

from shared.request_model import MODEL_SLUG
from tests.shared.sandbox.calls import SEED_EXAMPLE


@pytest.fixture
def sdk(sandbox):
    client = SegmindClient(api_key="sdk-key", base_url=f"{sandbox.url}/v1")
    yield client
    client._client.close()


def test_run_completes_the_seed_example_with_a_1024_jpeg(sdk) -> None:
    result = sdk.run(MODEL_SLUG, **SEED_EXAMPLE)

    assert result["status"] == "COMPLETED"
    assert result["metrics"]["inference_time"] > 0
    image = Image.open(io.BytesIO(httpx.get(result["output"], timeout=10).content))
    assert (image.format, image.size) == ("JPEG", (1024, 1024))


def test_wait_raises_inference_failed_with_the_sandbox_error(sandbox, sdk) -> None:
    sandbox.set_faults(fail_error="NSFW content detected in the sandbox")
    job = sdk.submit_async(MODEL_SLUG, **{**SEED_EXAMPLE, "prompt": "a panda [fail]"})

    with pytest.raises(InferenceFailed) as failed:
        job.wait(timeout=10, interval=0.05)

    assert failed.value.detail == "NSFW content detected in the sandbox"
    assert failed.value.status_body["status"] == "FAILED"


def test_wrong_key_raises_segmind_error_401(make_sandbox) -> None:
    sandbox = make_sandbox(api_keys=["the-right-key"])
    client = SegmindClient(api_key="a-wrong-key", base_url=f"{sandbox.url}/v1")
    try:
        with pytest.raises(SegmindError) as refused:
            client.submit_async(MODEL_SLUG, **SEED_EXAMPLE)
    finally:
        client._client.close()

    assert refused.value.status == 401
    assert refused.value.detail.startswith("Unauthorized")
