"""The calls a client makes on the sandbox, shared by its tests."""

from __future__ import annotations

import time
from typing import Any

import httpx

from shared.request_model import MODEL_SLUG

SUBMIT_PATH = f"/v2/{MODEL_SLUG}"

SEED_EXAMPLE: dict[str, Any] = {
    "prompt": "A panda in a glowing tech-infused jacket, standing in front of a bustling "
    "cyberpunk market, his T-shirt displaying 'Segmind'. Neon lights illuminate his face, with "
    "a futuristic cityscape behind him. Reflections shimmer on the wet pavement.",
    "negative_prompt": "low quality, blurry",
    "steps": 4,
    "guidance_scale": 1,
    "seed": 98552302,
    "sampler": "dpmpp_2m",
    "scheduler": "sgm_uniform",
    "width": 1024,
    "height": 1024,
    "aspect_ratio": "custom",
    "batch_size": 1,
    "image_format": "jpeg",
    "image_quality": 95,
    "base64": False,
}
"""The seed page's example body."""


def submit(client: httpx.Client, **params: Any) -> str:
    """Submit (small images unless asked otherwise) and return the request id."""
    body = {"prompt": "a lighthouse at dusk", "width": 256, "height": 256, **params}
    answer = client.post(SUBMIT_PATH, json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()["request_id"]


def wait_finished(client: httpx.Client, request_id: str, timeout_s: float = 5.0) -> httpx.Response:
    """Poll the status until COMPLETED or FAILED; the last status answer."""
    deadline = time.monotonic() + timeout_s
    while True:
        answer = client.get(f"/v2/requests/{request_id}/status")
        if answer.json().get("status") in ("COMPLETED", "FAILED"):
            return answer
        assert time.monotonic() < deadline, f"{request_id} still {answer.json()}"
        time.sleep(0.01)


def result_of(client: httpx.Client, request_id: str) -> httpx.Response:
    wait_finished(client, request_id)
    return client.get(f"/v2/requests/{request_id}")
