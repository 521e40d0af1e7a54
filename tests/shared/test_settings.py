"""The settings object refuses what would fail later, naming the environment variable."""

from __future__ import annotations

import pytest

from shared.errors import ConfigurationError
from shared.settings import load_settings


@pytest.mark.parametrize(
    ("name", "url", "why"),
    [
        ("SEGQ_REDIS_URL", "notaurl", "is not a URL"),
        ("SEGQ_REDIS_URL", "127.0.0.1:6379", "is not a URL"),
        ("SEGQ_REDIS_URL", "redis://127.0.0.1:notaport/0", "the port is not a number"),
        ("SEGQ_REDIS_URL", "redis://127.0.0.1:99999/0", "the port is not a number"),
        ("SEGQ_REDIS_URL", "http://127.0.0.1:6379/0", "the scheme must be one of redis"),
        ("SEGQ_BROKER_URL", "amqp://guest:guest@127.0.0.1:xx//", "the port is not a number"),
        ("SEGQ_BROKER_URL", "amqq://guest:hunter2pw@127.0.0.1//", "the scheme must be one of"),
        ("SEGQ_BROKER_URL", "redis://a:6379/0;redsi://:hunter2pw@b:6379/0", "must be one of"),
        ("SEGQ_REDIS_URL", "redsi://:hunter2pw@127.0.0.1:6379/0", "the scheme must be one"),
        ("SEGQ_REDIS_URL", "redis://u:hunter2pw@127.0.0.1:xx/0", "the port is not a number"),
    ],
)
def test_a_malformed_redis_or_broker_url_is_a_configuration_error_naming_it(name, url, why):
    with pytest.raises(ConfigurationError, match=f"{name}: Value error, .*{why}") as caught:
        load_settings({name: url})
    assert "hunter2pw" not in str(caught.value)
    if "hunter2pw" in url:
        assert ":***@" in str(caught.value)


@pytest.mark.parametrize(
    "url",
    ["redis://localhost:6379/0", "rediss://:secret@redis.example:6380/2", "unix:///run/redis.sock",
     "sentinel://:pw@10.0.0.1:26379/0;sentinel://10.0.0.2:26379"],
)  # fmt: skip
def test_every_redis_url_form_segq_supports_is_accepted(url):
    assert load_settings({"SEGQ_REDIS_URL": url}).redis_url == url
    if not url.startswith("unix:"):  # kombu's form of a socket is redis+socket://
        assert load_settings({"SEGQ_BROKER_URL": url}).broker_url == url


@pytest.mark.parametrize("url", ["amqp://guest:guest@127.0.0.1:5672//", "pyamqp://h//",
                                 "amqps://h:5671//", "redis+socket:///run/redis.sock"])  # fmt: skip
def test_broker_urls_of_kombus_transports_are_accepted(url):
    if not url.startswith("unix:"):  # kombu's form of a socket is redis+socket://
        assert load_settings({"SEGQ_BROKER_URL": url}).broker_url == url


def test_an_api_key_read_with_its_files_newline_is_trimmed():
    settings = load_settings({"SEGMIND_API_KEY": "SG_0123456789abcdef\n"})
    assert settings.segmind_api_key is not None
    assert settings.segmind_api_key.get_secret_value() == "SG_0123456789abcdef"


@pytest.mark.parametrize("key", ["SG_0123 456789", "SG_0123\n456789", "SG_0123\x00456789",
                                 "SG_0123é456789"])  # fmt: skip
def test_an_api_key_with_spaces_or_invisible_characters_inside_is_refused_unshown(key):
    with pytest.raises(ConfigurationError, match=r"SEGMIND_API_KEY: .*not visible ASCII") as caught:
        load_settings({"SEGMIND_API_KEY": key})
    assert "456789" not in str(caught.value)


@pytest.mark.parametrize(("retention_s", "lease_s"), [(60, 60), (300, 600)])
def test_a_retention_no_longer_than_the_lease_is_refused_naming_both(retention_s, lease_s):
    env = {"SEGQ_JOB_RETENTION_S": str(retention_s), "SEGQ_LEASE_S": str(lease_s)}
    with pytest.raises(ConfigurationError) as refused:
        load_settings(env)
    assert f"SEGQ_JOB_RETENTION_S: Value error, {retention_s} s is not longer than " in str(
        refused.value
    )
    assert f"SEGQ_LEASE_S={lease_s}:" in str(refused.value)
    assert load_settings({**env, "SEGQ_JOB_RETENTION_S": str(lease_s + 1)}).job_retention_s


def test_a_misspelt_setting_in_lower_case_is_refused_too():
    with pytest.raises(ConfigurationError, match=r"segq_leese_s is not a segq setting .*LEASE_S"):
        load_settings({"segq_leese_s": "1"})
