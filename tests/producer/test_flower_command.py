"""`segq flower` without starting Flower: options passed in both spellings, authentication
required and kept off the command line, a stable cookie secret. (Flower itself, against a
real worker: tests/integration/test_flower.py.)"""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from producer.commands import flower as flower_module
from producer.commands.flower import (
    flower_argv,
    flower_environment,
    flower_option_kinds,
    normalize_options,
)
from shared.settings import load_settings

KINDS = flower_option_kinds()


def settings(**overrides: object):
    return load_settings({}, **overrides)


@pytest.mark.parametrize(
    ("given", "passed"),
    [
        (["--port", "5556"], ["--port=5556"]),
        (["--port=5556"], ["--port=5556"]),
        (["--url_prefix", "flower", "--xheaders"], ["--url_prefix=flower", "--xheaders"]),
        (["--url-prefix", "flower"], ["--url-prefix=flower"]),
        (["--persistent", "--db", "/var/lib/f.db"], ["--persistent", "--db=/var/lib/f.db"]),
        (["--persistent", "false"], ["--persistent=false"]),
        (["--auth", ".*@example\\.com"], ["--auth=.*@example\\.com"]),
        (["--not-a-flower-option", "x"], ["--not-a-flower-option", "x"]),
    ],
)
def test_options_reach_flower_in_the_spelling_tornado_accepts(given, passed):
    assert normalize_options(given, KINDS) == passed


def test_an_option_missing_its_value_is_a_usage_error():
    with pytest.raises(click.UsageError, match="--port requires a value"):
        normalize_options(["--port"], KINDS)


def test_basic_auth_goes_to_flower_through_its_environment_not_its_command_line():
    options = normalize_options(["--port", "5556"], KINDS)
    env = flower_environment(settings(flower_basic_auth="ops:pw-1"), options, {}, no_auth=False)
    assert env["FLOWER_BASIC_AUTH"] == "ops:pw-1"
    assert not any("pw-1" in arg for arg in flower_argv(options))


def test_no_authentication_is_refused_with_what_to_do():
    with pytest.raises(click.UsageError, match="SEGQ_FLOWER_BASIC_AUTH=user:pass"):
        flower_environment(settings(), [], {}, no_auth=False)


def test_no_auth_on_purpose_starts_without_credentials():
    env = flower_environment(settings(), [], {"PATH": "/bin"}, no_auth=True)
    assert "FLOWER_BASIC_AUTH" not in env
    assert env["PATH"] == "/bin"


def test_no_auth_together_with_configured_auth_is_refused():
    with pytest.raises(click.UsageError, match="choose one"):
        flower_environment(settings(flower_basic_auth="a:b"), [], {}, no_auth=True)


def test_flowers_oauth_options_count_as_authentication():
    options = ["--auth=.*@example\\.com", "--auth_provider=flower.views.auth.GithubLoginHandler"]
    env = flower_environment(settings(), options, {"FLOWER_OAUTH2_SECRET": "s"}, no_auth=False)
    assert env["FLOWER_COOKIE_SECRET"]


def test_basic_auth_on_the_command_line_is_refused():
    with pytest.raises(click.UsageError, match="ps"):
        flower_environment(settings(), ["--basic_auth=a:b"], {}, no_auth=False)


@pytest.mark.parametrize("credentials", ["nopassword", ":pw", "a:b,broken", "user:"])
def test_malformed_basic_auth_is_refused(credentials):
    with pytest.raises(click.UsageError, match="user:password"):
        flower_environment(settings(flower_basic_auth=credentials), [], {}, no_auth=False)


def test_several_basic_auth_users_are_accepted():
    env = flower_environment(settings(flower_basic_auth="a:1,b:2"), [], {}, no_auth=False)
    assert env["FLOWER_BASIC_AUTH"] == "a:1,b:2"


def test_cookie_secret_is_stable_for_one_password_and_differs_between_passwords():
    def secret(credentials: str) -> str:
        env = flower_environment(settings(flower_basic_auth=credentials), [], {}, no_auth=False)
        return env["FLOWER_COOKIE_SECRET"]

    assert secret("a:one") == secret("a:one")
    assert secret("a:one") != secret("a:two")
    assert "one" not in secret("a:one")


def test_an_explicit_cookie_secret_is_left_alone():
    auth = settings(flower_basic_auth="a:b")
    env = flower_environment(auth, ["--cookie_secret=mine"], {}, no_auth=False)
    assert "FLOWER_COOKIE_SECRET" not in env
    env = flower_environment(auth, [], {"FLOWER_COOKIE_SECRET": "theirs"}, no_auth=False)
    assert env["FLOWER_COOKIE_SECRET"] == "theirs"


def test_flower_runs_on_segqs_app_on_loopback_unless_told_otherwise():
    argv = flower_argv(["--port=6000"])
    assert argv[1:] == ["-m", "celery", "-A", "workers", "flower", "--address=127.0.0.1",
                        "--port=6000"]  # fmt: skip
    assert flower_argv(["--address=0.0.0.0"])[6:] == ["--port=5555", "--address=0.0.0.0"]


def test_the_command_replaces_itself_with_flower(monkeypatch):
    calls = []
    monkeypatch.setattr(flower_module, "get_settings", lambda: settings(flower_basic_auth="a:b"))
    monkeypatch.setattr(flower_module.os, "execve", lambda *args: calls.append(args))
    result = CliRunner().invoke(flower_module.flower, ["--port", "5999", "--persistent"])
    assert result.exit_code == 0, result.output
    ((path, argv, env),) = calls
    assert argv[0] == path
    assert argv[-2:] == ["--port=5999", "--persistent"]
    assert env["FLOWER_BASIC_AUTH"] == "a:b"


def test_the_command_without_auth_exits_with_a_clear_message(monkeypatch):
    monkeypatch.setattr(flower_module, "get_settings", lambda: settings())
    monkeypatch.setattr(flower_module.os, "execve", pytest.fail)
    result = CliRunner().invoke(flower_module.flower, [])
    assert result.exit_code == 2
    assert "without authentication" in result.output


def test_non_ascii_basic_auth_which_flower_cannot_compare_is_refused():
    with pytest.raises(click.UsageError, match="must be ASCII"):
        flower_environment(settings(flower_basic_auth="ädmin:pässwort"), [], {}, no_auth=False)


def test_flower_is_not_handed_the_workers_api_key():
    environ = {"SEGMIND_API_KEY": "SG_0123456789abcdef", "SEGQ_REDIS_URL": "redis://r:6379/0"}
    env = flower_environment(settings(flower_basic_auth="a:b"), [], environ, no_auth=False)
    assert "SEGMIND_API_KEY" not in env and env["SEGQ_REDIS_URL"] == "redis://r:6379/0"


@pytest.mark.parametrize("port", ["70000", "abc", "-5", "²"])
def test_a_port_flower_would_wrap_or_choke_on_is_a_usage_error(monkeypatch, port):
    monkeypatch.setattr(flower_module, "get_settings", lambda: settings(flower_basic_auth="a:b"))
    monkeypatch.setattr(flower_module.os, "execve", pytest.fail)
    result = CliRunner().invoke(flower_module.flower, ["--port", port])
    assert result.exit_code == 2 and "--port must be a number from 0 to 65535" in result.output
