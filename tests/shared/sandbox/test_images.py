"""Outputs are real, decodable images at the requested format, size and quality, the same
bytes for the same seed and prompt."""

from __future__ import annotations

import dataclasses
import io
from typing import Any

import pytest
from PIL import Image

from shared.sandbox.images import ImageSpec, render_image
from tests.shared.sandbox.calls import result_of, submit

BASE = ImageSpec("a fox", 1, 0, 160, 120, "jpeg", 95)


def spec(**changes: Any) -> ImageSpec:
    return dataclasses.replace(BASE, **changes)


@pytest.mark.parametrize(
    ("image_format", "pillow_format"), [("jpeg", "JPEG"), ("png", "PNG"), ("webp", "WEBP")]
)
def test_image_has_the_requested_format_and_size(image_format: str, pillow_format: str) -> None:
    image = Image.open(io.BytesIO(render_image(spec(image_format=image_format, width=200))))

    assert (image.format, image.size) == (pillow_format, (200, 120))


def test_same_seed_and_prompt_give_the_same_bytes_and_others_do_not() -> None:
    assert render_image(spec()) == render_image(spec())
    assert render_image(spec(seed=2)) != render_image(spec())
    assert render_image(spec(prompt="a hare")) != render_image(spec())
    assert render_image(spec(index=1)) != render_image(spec())


def test_lower_quality_gives_smaller_files() -> None:
    assert len(render_image(spec(image_quality=10))) < len(render_image(spec(image_quality=95)))


def test_served_image_is_the_requested_one_and_the_same_across_jobs(client) -> None:
    params = {"prompt": "a lighthouse", "seed": 5, "width": 320, "height": 192,
              "image_format": "png"}  # fmt: skip
    first = result_of(client, submit(client, **params)).json()["output"]
    second = result_of(client, submit(client, **params)).json()["output"]

    served = client.get(first)

    assert served.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(served.content)).size == (320, 192)
    assert client.get(second).content == served.content
    assert served.content == render_image(spec(prompt="a lighthouse", seed=5, width=320,
                                               height=192, image_format="png"))  # fmt: skip


@pytest.mark.parametrize("name", ["1.jpg", "0.png", "x.jpg", "0"])
def test_media_outside_the_job_answers_404(client, name: str) -> None:
    output = result_of(client, submit(client)).json()["output"]

    assert client.get(output.rsplit("/", 1)[0] + f"/{name}").status_code == 404


def test_media_of_an_unfinished_or_failed_job_answers_404(client) -> None:
    failed = submit(client, prompt="[fail]")
    result_of(client, failed)

    assert client.get(f"/media/{failed}/0.jpg").status_code == 404
    assert client.get("/media/unknown/0.jpg").status_code == 404
