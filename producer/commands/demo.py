"""`segq demo`: the whole system on this machine in one command, and nothing left running after.

It finds or starts a Redis, starts the sandbox (unless ``SEGMIND_API_KEY`` is set) and a worker
(``producer.demo_stack``), enqueues a dozen example prompts in varied formats and sizes through
the producer API, follows them with ``segq wait``'s progress bar while their images are saved,
and prints where they are. Everything it started is stopped on the way out: at the end, on an
error, on Ctrl-C (even a second one) and on SIGTERM.
"""

from __future__ import annotations

import contextlib
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
from rich.console import Console

from producer.api import Producer
from producer.batch_watch import BatchTarget, WaitOutcome, watch
from producer.cli import INTERRUPTED_EXIT_STATUS
from producer.demo_stack import DemoStack
from producer.output_download import OutputDownloader, keyless_fetch
from producer.progress_view import ProgressView, describe, images
from producer.terminal import people, report_console
from shared.settings import Settings, get_settings

DEFAULT_OUTPUT = Path("segq-demo-output")
DEMO_TIME_SCALE = 1.0
"""The sandbox's simulated times as Segmind's (about 2.5 s a job): quick, and honest."""
DEMO_TIMEOUT_S = 300.0

DEMO_REQUESTS: list[dict[str, object]] = [
    {"prompt": "a lighthouse on a cliff at dusk, oil painting",
     "aspect_ratio": "16:9 landscape 1344x768"},
    {"prompt": "a red fox curled up in fresh snow", "width": 768, "height": 768,
     "image_format": "png"},
    {"prompt": "isometric cutaway of a tiny bakery", "width": 512, "height": 512,
     "image_format": "webp"},
    {"prompt": "a paper boat on a rainy street, macro photograph",
     "aspect_ratio": "3:4 portrait 896x1152"},
    {"prompt": "a bowl of ramen under studio lights", "width": 640, "height": 640,
     "image_format": "png", "base64": True},
    {"prompt": "an astronaut tending a greenhouse on Mars",
     "aspect_ratio": "21:9 landscape 1536x640", "image_format": "webp"},
    {"prompt": "a watercolour map of an imaginary island"},
    {"prompt": "a vintage bicycle against a yellow wall", "width": 512, "height": 768,
     "batch_size": 2},
    {"prompt": "a hummingbird mid-flight, fast shutter", "aspect_ratio": "9:16 portrait 768x1344",
     "image_format": "png"},
    {"prompt": "a cosy reading nook with a sleeping cat", "width": 832, "height": 640,
     "steps": 8, "image_quality": 80},
    {"prompt": "a neon-lit alley in the rain, cinematic", "aspect_ratio": "16:9 landscape 1344x768",
     "image_format": "webp", "seed": 42},
    {"prompt": "a stack of pancakes with blueberries", "width": 448, "height": 448,
     "guidance_scale": 2.0},
]  # fmt: skip
"""Twelve jobs: three formats, presets and custom sizes, two images in one job, one base64."""


@dataclass(frozen=True)
class DemoRun:
    batch_id: str
    outcome: WaitOutcome
    elapsed_s: float


@click.command()
@click.option(
    "--output",
    "output_dir",
    default=DEFAULT_OUTPUT,
    show_default=True,
    type=click.Path(file_okay=False, writable=True, path_type=Path),
    help="Folder the images are saved in (created if missing).",
)
@click.option(
    "--time-scale",
    type=click.FloatRange(0.01, 100),
    default=DEMO_TIME_SCALE,
    show_default=True,
    help="Sandbox only: multiplies its simulated inference and "
    "queue times (1: as long as Segmind's).",
)
@click.option(
    "--sandbox",
    "force_sandbox",
    is_flag=True,
    help="Use the local sandbox even when SEGMIND_API_KEY is set.",
)
def demo(output_dir: Path, time_scale: float, force_sandbox: bool) -> None:
    """Run everything on this machine: Redis, the sandbox, a worker and a batch of 12 prompts.

    Uses the Redis at SEGQ_REDIS_URL if one answers, else starts a private redis-server; uses the
    local sandbox unless SEGMIND_API_KEY is set (then the jobs run on Segmind, billed). Saves the
    images into --output and stops everything it started, also on Ctrl-C.
    """
    console = people()
    try:
        with stopped_on_exit(console) as stack:
            run = run_demo(stack, get_settings(), console, output_dir, time_scale, force_sandbox)
    except KeyboardInterrupt:
        console.print("Interrupted. Everything the demo started is stopped.")
        click.get_current_context().exit(INTERRUPTED_EXIT_STATUS)
    print_summary(report_console(), run, output_dir)
    click.get_current_context().exit(run.outcome.exit_status)


@contextlib.contextmanager
def stopped_on_exit(console: Console) -> Iterator[contextlib.ExitStack]:
    """An ExitStack for the demo's pieces, closed with Ctrl-C and SIGTERM ignored: a second
    Ctrl-C while the worker shuts down must not leave it (or Redis) running."""
    stack = contextlib.ExitStack()
    # Ctrl-C raises KeyboardInterrupt even where the shell started us ignoring SIGINT (`&`).
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    previous_term = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield stack
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            console.print("Stopping what the demo started...")
            stack.close()
        finally:
            signal.signal(signal.SIGINT, previous_int)
            signal.signal(signal.SIGTERM, previous_term)


def _raise_interrupt(_signum: int, _frame: object) -> None:
    """SIGTERM ends the demo the way Ctrl-C does."""
    raise KeyboardInterrupt


def run_demo(
    stack: contextlib.ExitStack,
    settings: Settings,
    console: Console,
    output_dir: Path,
    time_scale: float,
    force_sandbox: bool,
) -> DemoRun:
    """Starts the pieces on ``stack``, runs the batch to its end, saving its images."""
    pieces = DemoStack(stack, settings, lambda line: console.print(line, markup=False))
    redis_url = pieces.start_redis()
    pieces.start_upstream(time_scale, force_sandbox)
    output_dir.mkdir(parents=True, exist_ok=True)
    worker = pieces.start_worker(output_dir)
    with console.status("Starting the worker..."):
        worker.wait_ready()
    started = time.monotonic()
    producer = stack.enter_context(Producer(redis_url, settings=settings))
    batch_id = f"demo-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"
    receipt = producer.enqueue_many(DEMO_REQUESTS, batch_id=batch_id, source="segq demo")
    console.print(f"Batch {batch_id}: {receipt.created} jobs enqueued; images go to "
                  f"{output_dir.resolve()}", markup=False)  # fmt: skip
    fetch = stack.enter_context(keyless_fetch(settings))
    downloader = stack.enter_context(OutputDownloader(output_dir, fetch))
    outcome = watch(BatchTarget(producer, batch_id), ProgressView("demo", console),
                    timeout_s=DEMO_TIMEOUT_S, downloader=downloader,
                    on_tick=worker.check_alive)  # fmt: skip
    return DemoRun(batch_id, outcome, time.monotonic() - started)


def print_summary(console: Console, run: DemoRun, output_dir: Path) -> None:
    """What ran, how it ended, and where the images are."""
    progress = run.outcome.progress
    console.print(f"\nsegq demo: {progress.total} jobs in {run.elapsed_s:.1f} s: "
                  f"{describe(progress, None)}.", markup=False)  # fmt: skip
    files = sorted(run.outcome.saved.files) if run.outcome.saved else []
    console.print(f"{images(len(files))} in {output_dir.resolve()}:", markup=False)
    for path in files:
        console.print(f"  {path.name}", markup=False)
    for failure in run.outcome.saved.failures if run.outcome.saved else []:
        console.print(f"  not saved: {failure}", markup=False)
    if run.outcome.timed_out:
        console.print(f"The batch did not finish within {DEMO_TIMEOUT_S:.0f} s.")
    console.print("Everything the demo started is stopped. Next: segq batch FILE, "
                  "then segq wait BATCH_ID --download DIR (see the README).")  # fmt: skip
