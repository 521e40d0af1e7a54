"""`segq pause [REASON]`: stop new submits fleet-wide until `segq resume`."""

from __future__ import annotations

import click

from producer.terminal import open_producer, people

DEFAULT_REASON = "paused with segq pause"


@click.command()
@click.argument("reason", nargs=-1)
def pause(reason: tuple[str, ...]) -> None:
    """Pause the whole fleet: no job is submitted upstream until `segq resume`; jobs already
    running upstream finish. REASON is shown by `segq status`."""
    text = " ".join(reason) or DEFAULT_REASON
    with open_producer() as producer:
        producer.pause(text)
    people().print(f"fleet paused: {text}")
