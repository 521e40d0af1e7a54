"""Logging: plain and JSON lines, the API key never written, prompts only when asked for."""

from __future__ import annotations

import io
import json
import logging

import pytest

from shared import logging_setup
from shared.logging_setup import configure_logging, log_job_transition
from shared.settings import load_settings

API_KEY = "SG_0123456789abcdef"


@pytest.fixture
def configure():
    """configure_logging into a buffer; the root logger is put back as it was afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    saved_prompts = dict(logging_setup._log_prompts)
    buffer = io.StringIO()

    def apply(**overrides: object) -> io.StringIO:
        settings = load_settings({"SEGMIND_API_KEY": API_KEY}, **overrides)
        configure_logging(settings, stream=buffer)
        return buffer

    yield apply
    root.handlers[:] = saved_handlers
    for handler in saved_handlers:
        for added in [f for f in handler.filters if isinstance(f, logging_setup.RedactSecrets)]:
            handler.removeFilter(added)
    root.setLevel(saved_level)
    logging_setup._log_prompts.update(saved_prompts)


def lines(buffer: io.StringIO) -> list[str]:
    return buffer.getvalue().splitlines()


def test_api_key_is_redacted_from_message_args_extras_and_tracebacks(configure):
    buffer = configure(log_level="DEBUG")
    log = logging.getLogger("some.library")
    log.debug("headers %s", {"x-api-key": API_KEY})
    log.info(f"url with key {API_KEY}", extra={"header": f"x-api-key: {API_KEY}"})
    try:
        raise RuntimeError(f"upstream said no to {API_KEY}")
    except RuntimeError:
        log.exception("call failed")
    text = buffer.getvalue()
    assert API_KEY not in text
    assert text.count(logging_setup.REDACTED) >= 3
    assert "RuntimeError: upstream said no to [REDACTED]" in text


def test_json_lines_carry_job_fields_and_are_redacted(configure):
    buffer = configure(log_json=True)
    log = logging.getLogger("segq.jobs")
    log_job_transition(log, job_id="b1.7", request_id="req-9", state="completed", elapsed_s=3.14159)
    log.warning("key %s leaked", API_KEY)
    first, second = (json.loads(line) for line in lines(buffer))
    assert first["job_id"] == "b1.7"
    assert first["request_id"] == "req-9"
    assert first["state"] == "completed"
    assert first["elapsed_s"] == 3.142
    assert first["level"] == "INFO"
    assert first["logger"] == "segq.jobs"
    assert first["message"] == "job b1.7 completed request_id=req-9 elapsed_s=3.14"
    assert "prompt" not in first
    assert second["message"] == "key [REDACTED] leaked"


def test_secrets_inside_an_extras_dicts_and_lists_are_redacted_in_json_lines(configure):
    # As Celery logs a task's outcome: extra={"data": {...}}, written out whole as JSON
    buffer = configure(log_json=True)
    data = {"exc": f"refused: {API_KEY}", "args": [f"key={API_KEY}"], "id": "t1"}
    logging.getLogger("celery.app.trace").error("Task failed", extra={"data": data})
    [entry] = (json.loads(line) for line in lines(buffer))
    assert API_KEY not in json.dumps(entry)
    assert entry["data"] == {"exc": "refused: [REDACTED]", "args": ["key=[REDACTED]"], "id": "t1"}


def test_a_job_transition_is_one_plain_line_without_the_prompt_by_default(configure):
    buffer = configure()
    log_job_transition(
        logging.getLogger("segq.jobs"),
        job_id="j1",
        request_id=None,
        state="failed",
        detail='model said "no"\nsecond line',
        prompt="a portrait of my neighbour",
    )
    (line,) = lines(buffer)
    assert "WARNING segq.jobs" in line
    assert 'job j1 failed request_id=- detail="model said \\"no\\"\\nsecond line"' in line
    assert "neighbour" not in line


def test_prompts_are_logged_cut_short_when_asked_for(configure):
    buffer = configure(log_prompts=True, log_json=True)
    prompt = "a cat " * 100
    log_job_transition(
        logging.getLogger("segq.jobs"), job_id="j2", request_id="r", state="submitted",
        prompt=prompt,
    )  # fmt: skip
    (entry,) = (json.loads(line) for line in lines(buffer))
    assert entry["prompt"] == prompt[: logging_setup.PROMPT_LOG_CHARS]
    assert "prompt=" in entry["message"]


def test_log_level_comes_from_settings(configure):
    buffer = configure(log_level="WARNING")
    logging.getLogger("segq.test").info("quiet")
    logging.getLogger("segq.test").warning("loud")
    assert [line.split()[-1] for line in lines(buffer)] == ["loud"]


def test_configuring_twice_keeps_one_handler_and_redacts_on_every_root_handler(configure):
    root = logging.getLogger()
    other = logging.StreamHandler(io.StringIO())
    root.addHandler(other)
    buffer = configure()
    configure()
    logging.getLogger("x").warning("token %s", API_KEY)
    assert len(lines(buffer)) == 1
    assert API_KEY not in other.stream.getvalue()
    assert "[REDACTED]" in other.stream.getvalue()


def test_bad_log_arguments_do_not_raise_in_the_caller_nor_leak(configure, capsys):
    buffer = configure()
    logging.getLogger("x").warning("two %s %s", API_KEY)
    assert API_KEY not in buffer.getvalue() + capsys.readouterr().err
    assert "arguments did not fit" in buffer.getvalue()


def test_flower_password_is_redacted_too(configure):
    buffer = configure(flower_basic_auth="admin:s3cret-pass")
    logging.getLogger("x").warning("login admin s3cret-pass")
    assert "s3cret-pass" not in buffer.getvalue()


def test_every_flower_users_password_is_redacted(configure):
    buffer = configure(flower_basic_auth="admin:s3cret-pass,bob:b0b-secret-pw")
    logging.getLogger("x").warning("logins s3cret-pass b0b-secret-pw")
    assert "s3cret-pass" not in buffer.getvalue() and "b0b-secret-pw" not in buffer.getvalue()
