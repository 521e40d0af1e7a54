"""Starting and stopping: in-process on a thread, and `segq sandbox` in the foreground."""

from __future__ import annotations

import signal
import subprocess
import sys

import httpx
import pytest
from click.testing import CliRunner

from producer.commands.sandbox import config_from_options, sandbox
from shared.sandbox import SandboxConfig, start_sandbox
from tests.shared.sandbox.calls import submit


def test_in_process_sandbox_binds_loopback_and_stops_cleanly() -> None:
    with start_sandbox() as running:
        assert running.url.startswith("http://127.0.0.1:")
        assert httpx.get(f"{running.url}/_sandbox/faults", timeout=5).status_code == 200

    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{running.url}/_sandbox/faults", timeout=5)
    running.stop()  # a second stop does nothing


def test_stop_ends_answers_still_under_way(make_client) -> None:
    running = start_sandbox(SandboxConfig(slow_probability=1.0, slow_s=30))
    client = make_client(running.url)
    with pytest.raises(httpx.ReadTimeout):
        client.get("/v2/requests/x/status", timeout=0.2)

    running.stop()  # the slow answer's task is ended, nothing warns


def test_a_port_in_use_is_an_error_and_leaves_nothing_running(sandbox) -> None:
    port = int(sandbox.url.rsplit(":", 1)[1])

    with pytest.raises(OSError):
        start_sandbox(port=port)


def test_every_knob_is_a_command_line_option() -> None:
    names = {param.name for param in sandbox.params}

    assert set(SandboxConfig.model_fields) <= names
    assert {"host", "port", "access_log"} <= names


def test_options_build_the_configuration() -> None:
    config = config_from_options(
        {
            "gpus": 3,
            "api_keys": ("a", "b"),
            "outage": True,
            "submit_rpm": None,
            "forbidden_keys": (),
        }
    )

    assert (config.gpus, config.api_keys, config.outage) == (3, ["a", "b"], True)
    assert config.submit_rpm is None


def test_invalid_option_is_a_usage_error_naming_it() -> None:
    result = CliRunner().invoke(sandbox, ["--drop-probability", "1.5"])

    assert result.exit_code == 2
    assert "--drop-probability" in result.output


def test_segq_sandbox_serves_in_the_foreground_until_sigterm() -> None:
    argv = [sys.executable, "-m", "producer", "sandbox", "--port", "0", "--time-scale", "0.01",
            "--api-keys", "cli-key"]  # fmt: skip
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    try:
        line = process.stdout.readline()
        url = line.rsplit(" ", 1)[1].strip()
        assert line.startswith("segq sandbox listening on http://127.0.0.1:")
        with httpx.Client(base_url=url, headers={"x-api-key": "cli-key"}, timeout=5) as client:
            submit(client)
            assert client.get("/_sandbox/truth").json()["totals"]["submits"] == 1
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
    finally:
        process.kill()
        process.wait()
        process.stdout.close()
