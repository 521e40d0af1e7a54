"""`segq resume`: end a pause (manual, or one the fleet took on account trouble or an outage)."""

from __future__ import annotations

import click

from producer.terminal import open_producer, people


@click.command()
def resume() -> None:
    """Resume submitting, fleet-wide."""
    with open_producer() as producer:
        was = producer.fleet_state()
        producer.resume()
    people().print("fleet resumed" if was.paused else "fleet was not paused")
