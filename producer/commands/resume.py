"""`segq resume`: end a pause (manual, or one the fleet took on account trouble or an outage)
and lift the holds 429s put on the fleet's budgets."""

from __future__ import annotations

import click

from producer.status_view import hold_line, learned_rate_line
from producer.terminal import open_producer, people


@click.command()
def resume() -> None:
    """Resume submitting, fleet-wide, and lift the holds of 429s (a named window may hold a
    day). The rates learned from 429s stay: the fleet goes on at them, not in a burst."""
    with open_producer() as producer:
        resumed = producer.resume()
        learned = [s for s in producer.fleet_state().rate_limits if s.learned_per_min is not None]
    console = people()
    console.print("fleet resumed" if resumed.was_paused else "fleet was not paused")
    for state in resumed.holds_lifted:
        console.print(f"lifted: {hold_line(state)}")
    for state in learned:
        console.print(learned_rate_line(state))
