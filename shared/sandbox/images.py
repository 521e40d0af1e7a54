"""Real images for COMPLETED jobs: Pillow, at the requested size, format and quality.

An image is a function of its ``ImageSpec`` alone (prompt, seed, index, size, format, quality),
so the same seed and prompt always give the same bytes. Rendering is a gradient, a few shapes
and the prompt's text: about 20-80 ms for 1024x1024, done in a thread only when an image or a
base64 result is first asked for, and cached, so polls never pay for it.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import io
import textwrap
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont, ImageOps

MEDIA_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
EXTENSIONS = {"jpeg": "jpg", "png": "png", "webp": "webp"}
FORMAT_BY_EXTENSION = {ext: image_format for image_format, ext in EXTENSIONS.items()}


@dataclass(frozen=True, slots=True)
class ImageSpec:
    """Everything an image depends on; also its cache key."""

    prompt: str
    seed: int
    index: int
    width: int
    height: int
    image_format: str
    image_quality: int

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.image_format]

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.image_format]


def _palette(spec: ImageSpec) -> list[tuple[int, int, int]]:
    """Eight colours drawn from the prompt, seed and index (not from the size or format)."""
    digest = hashlib.sha256(f"{spec.seed}\x00{spec.index}\x00{spec.prompt}".encode()).digest()
    return [(digest[i], digest[i + 1], digest[i + 2]) for i in range(0, 24, 3)]


@functools.lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _draw_shapes(draw: ImageDraw.ImageDraw, spec: ImageSpec, colours: list) -> None:
    side = min(spec.width, spec.height)
    for n, colour in enumerate(colours[2:6]):
        x = (colour[0] * spec.width) // 255
        y = (colour[1] * spec.height) // 255
        radius = side // 10 + (colour[2] * side) // 1024 + n
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=colour)


def _draw_caption(draw: ImageDraw.ImageDraw, spec: ImageSpec) -> None:
    size = max(10, min(spec.width, spec.height) // 24)
    font = _font(size)
    columns = max(8, int(spec.width / (size * 0.55)))
    lines = [*textwrap.wrap(spec.prompt, columns)[:6], f"seed {spec.seed} #{spec.index}"]
    y = size
    for line in lines:
        draw.text((size, y), line, font=font, fill=(255, 255, 255), stroke_width=2,
                  stroke_fill=(0, 0, 0))  # fmt: skip
        y += int(size * 1.3)


def _encode(image: Image.Image, spec: ImageSpec) -> bytes:
    out = io.BytesIO()
    if spec.image_format == "jpeg":
        image.save(out, "JPEG", quality=spec.image_quality)
    elif spec.image_format == "png":
        image.save(out, "PNG", compress_level=1)
    else:
        image.save(out, "WEBP", quality=spec.image_quality, method=0)
    return out.getvalue()


def render_image(spec: ImageSpec) -> bytes:
    """The encoded image for ``spec``; deterministic, thread-safe."""
    colours = _palette(spec)
    gradient = Image.linear_gradient("L").resize((spec.width, spec.height))
    if colours[7][0] & 1:
        gradient = gradient.transpose(Image.Transpose.ROTATE_90).resize((spec.width, spec.height))
    image = ImageOps.colorize(gradient, colours[0], colours[1])
    draw = ImageDraw.Draw(image)
    _draw_shapes(draw, spec, colours)
    _draw_caption(draw, spec)
    return _encode(image, spec)


class ImageCache:
    """Renders in a small thread pool, at most once per spec while it stays in the cache."""

    def __init__(self, max_images: int = 64, threads: int = 2) -> None:
        self._max_images = max_images
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="segq-sandbox-render")
        self._renders: OrderedDict[ImageSpec, asyncio.Future[bytes]] = OrderedDict()

    async def get(self, spec: ImageSpec) -> bytes:
        """The image's bytes; concurrent callers for one spec share one render."""
        render = self._renders.get(spec)
        if render is None:
            loop = asyncio.get_running_loop()
            render = loop.run_in_executor(self._executor, render_image, spec)
            self._renders[spec] = render
            if len(self._renders) > self._max_images:
                self._renders.popitem(last=False)
        else:
            self._renders.move_to_end(spec)
        try:
            return await asyncio.shield(render)
        except Exception:
            self._renders.pop(spec, None)
            raise

    def clear(self) -> None:
        self._renders.clear()

    def close(self) -> None:
        """Stop the render threads (waits for a render under way, drops queued ones)."""
        self._executor.shutdown(wait=True, cancel_futures=True)
