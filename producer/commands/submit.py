"""`segq submit --prompt TEXT`: enqueue one job and print its id."""

from __future__ import annotations

import click

from producer.terminal import (
    defaults_from,
    json_option,
    notify_options,
    open_producer,
    people,
    print_json,
    priority_option,
    set_option,
)


@click.command()
@click.option("--prompt", required=True, help="What to draw.")
@set_option
@priority_option
@click.option(
    "--idempotency-key",
    metavar="KEY",
    help="The same key always names the same job: submitting it twice runs it once.",
)
@notify_options
@json_option
def submit(
    prompt: str,
    assignments: tuple[str, ...],
    priority: str,
    idempotency_key: str | None,
    callback_task: str | None,
    webhook_url: str | None,
    as_json: bool,
) -> None:  # fmt: skip
    """Enqueue one job; prints its id (with --json: {"job_id", "created"})."""
    defaults = defaults_from(assignments)
    if "prompt" in defaults:
        raise click.UsageError("--set prompt=... would be ignored: give the prompt with --prompt")
    request = {**defaults, "prompt": prompt}
    with open_producer() as producer:
        job = producer.enqueue(request, idempotency_key=idempotency_key, priority=priority,
                               callback=callback_task, webhook_url=webhook_url)  # fmt: skip
    if as_json:
        print_json({"job_id": job.job_id, "created": job.created})
        return
    if not job.created:
        people().print(
            f"job {job.job_id} already exists for this idempotency key; not enqueued again"
        )
    click.echo(job.job_id)
