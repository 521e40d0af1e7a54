"""Redis beyond one open node: passwords, Sentinel URLs (parsed, and against a real Sentinel),
unix sockets, for the job store and the Celery broker alike. TLS is covered in
tests/test_deploy.py."""

from __future__ import annotations

import io
import logging
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis._parsers import _HiredisParser

from shared.errors import ConfigurationError
from shared.job_store import JobStore
from shared.local_redis import find_server_binary, free_port, start_local_redis
from shared.logging_setup import configure_logging
from shared.redis_connection import (
    SentinelAddress,
    broker_transport_options,
    is_sentinel_url,
    parse_sentinel_url,
    redis_client,
)
from shared.settings import load_settings
from tests.support.brokers import round_trip
from workers.celery_app import create_app, kombu_broker_url

MASTER_PASSWORD = "master-pw-0123"
SENTINEL_PASSWORD = "sentinel-pw-4567"
MASTER_NAME = "segq-master"
STARTUP_S = 15.0


def test_the_job_store_and_the_broker_parse_redis_replies_with_hiredis(redis_url):
    # Given the job store's client and a worker's broker channel on a real Redis
    settings = load_settings({}, redis_url=redis_url)
    store = JobStore.from_settings(settings)
    try:
        # Then both talk through hiredis's parser, not redis-py's Python one (which cost a
        # worker 14% more CPU per job: tests/benchmarks/bench_redis_client.py)
        assert isinstance(_parser_of(store.redis), _HiredisParser)
        with create_app(settings).connection_for_write() as broker:
            assert isinstance(_parser_of(broker.default_channel.client), _HiredisParser)
    finally:
        store.redis.close()


def _parser_of(client: redis.Redis) -> object:
    client.ping()
    connection = client.connection_pool.get_connection()
    try:
        return connection._parser
    finally:
        client.connection_pool.release(connection)


def test_a_sentinel_url_names_every_sentinel_the_database_and_the_masters_login():
    url = "sentinel://app:s%40cret@10.0.0.1:26380/2;sentinel://10.0.0.2;sentinel://h3:26381/"
    assert is_sentinel_url(url) and not is_sentinel_url("redis://h:6379/0")
    assert parse_sentinel_url(url) == SentinelAddress(
        sentinels=[("10.0.0.1", 26380), ("10.0.0.2", 26379), ("h3", 26381)],
        db=2,
        username="app",
        password="s@cret",
    )


@pytest.mark.parametrize(
    "url", ["sentinel://", "sentinel://h:1/0;redis://h:2", "sentinel://h:1/x", "sentinel://h:99999"]
)
def test_a_malformed_sentinel_url_is_a_configuration_error(url):
    with pytest.raises(ConfigurationError):
        parse_sentinel_url(url)


def test_a_sentinel_url_without_a_master_name_says_which_setting_is_missing():
    settings = load_settings({}, redis_url="sentinel://127.0.0.1:1/0")
    with pytest.raises(ConfigurationError, match="SEGQ_REDIS_SENTINEL_MASTER"):
        redis_client(settings)
    with pytest.raises(ConfigurationError, match="SEGQ_REDIS_SENTINEL_MASTER"):
        create_app(settings)


def test_the_broker_gets_the_master_name_and_sentinel_password_only_for_sentinel_urls():
    plain = load_settings({}, redis_url="redis://:pw@h:6379/0")
    assert broker_transport_options(plain) == {}
    sentinel = load_settings(
        {},
        redis_url="redis://h:6379/0",
        broker_url="sentinel://:pw@s1:26379/1;sentinel://s2:26379",
        redis_sentinel_master=MASTER_NAME,
        redis_sentinel_password=SENTINEL_PASSWORD,
    )
    options = create_app(sentinel).conf.broker_transport_options
    assert options["master_name"] == MASTER_NAME
    assert options["sentinel_kwargs"] == {"password": SENTINEL_PASSWORD}
    assert options["visibility_timeout"] == sentinel.visibility_timeout_s


@pytest.mark.parametrize("redis_url", [
    f"redis://:{MASTER_PASSWORD}@h:6379/0",
    f"unix:///run/redis.sock?db=0&password={MASTER_PASSWORD}",  # redis-py's query form
])  # fmt: skip
def test_passwords_in_redis_and_broker_urls_never_reach_a_log_line(redis_url):
    settings = load_settings(
        {},
        redis_url=redis_url,
        broker_url=f"sentinel://u:{MASTER_PASSWORD}x@s1:26379/1;sentinel://s2",
        redis_sentinel_password=SENTINEL_PASSWORD,
    )
    buffer = io.StringIO()
    handler = configure_logging(settings, stream=buffer)
    try:
        log_line = f"{settings.redis_url} {settings.broker_url} {SENTINEL_PASSWORD}"
        logging.getLogger("segq.test").warning(log_line)
    finally:
        logging.getLogger().removeHandler(handler)
    written = buffer.getvalue()
    assert "[REDACTED]" in written
    assert MASTER_PASSWORD not in written and SENTINEL_PASSWORD not in written


# -- real servers -----------------------------------------------------------------------------


def start_server(args: list[str], directory: Path) -> subprocess.Popen:
    log = (directory / "server.log").open("ab")
    try:
        return subprocess.Popen([find_server_binary(), *args], stdout=log, stderr=log)
    finally:
        log.close()


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def wait_for(check, what: str) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (redis.ConnectionError, redis.ResponseError):
            pass
        time.sleep(0.1)
    pytest.fail(f"{what}: not within {STARTUP_S}s")


@pytest.fixture
def master(tmp_path: Path) -> Iterator[int]:
    """A redis-server that wants a password; its port."""
    port = free_port()
    process = start_server(["--port", str(port), "--bind", "127.0.0.1", "--save", "",
                            "--requirepass", MASTER_PASSWORD, "--dir", str(tmp_path)],
                           tmp_path)  # fmt: skip
    try:
        client = redis.Redis(port=port, password=MASTER_PASSWORD)
        wait_for(client.ping, "master answers")
        client.close()
        yield port
    finally:
        stop(process)


@pytest.fixture
def sentinel(master: int, tmp_path: Path) -> Iterator[int]:
    """A real Sentinel (redis-server --sentinel) watching ``master``; its port."""
    port = free_port()
    config = tmp_path / "sentinel.conf"
    config.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\nrequirepass {SENTINEL_PASSWORD}\n"
        f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master} 1\n"
        f"sentinel auth-pass {MASTER_NAME} {MASTER_PASSWORD}\n"
    )
    process = start_server([str(config), "--sentinel"], tmp_path)
    try:
        client = redis.Redis(port=port, password=SENTINEL_PASSWORD, decode_responses=True)
        wait_for(lambda: client.sentinel_get_master_addr_by_name(MASTER_NAME), "sentinel knows")
        client.close()
        yield port
    finally:
        stop(process)


def test_a_password_protected_redis_is_reached_with_the_url_and_refused_without(master):
    good = load_settings({}, redis_url=f"redis://:{MASTER_PASSWORD}@127.0.0.1:{master}/0")
    store = JobStore.from_settings(good)
    assert store.redis.ping()
    store.redis.close()
    wrong = redis_client(load_settings({}, redis_url=f"redis://:nope@127.0.0.1:{master}/0"))
    with pytest.raises(redis.AuthenticationError):
        wrong.ping()
    wrong.close()


def test_a_password_and_database_given_as_a_query_reach_the_job_store_and_the_broker(master):
    # Given redis-py's other way to name the password and the database: a query (kombu reads
    # neither there)
    url = f"redis://127.0.0.1:{master}/?db=1&password={MASTER_PASSWORD}"
    settings = load_settings({}, redis_url=url)
    # Then the job store answers, and Celery's broker connection carries a message, both in
    # database 1
    store = JobStore.from_settings(settings)
    store.redis.set("segq:query-check", "1")
    store.redis.close()
    with create_app(settings).connection_for_write() as connection:
        assert round_trip(connection, "segq-query-check") == {"job_id": "j1"}
    with redis.Redis(port=master, password=MASTER_PASSWORD, db=1) as direct:
        assert direct.exists("segq:query-check", "_kombu.binding.segq-query-check") == 2


def test_job_store_and_broker_find_the_master_through_a_real_sentinel(master, sentinel):
    # Given URLs naming the real Sentinel first and one that is down after it
    down = free_port()
    urls = f"sentinel://:{MASTER_PASSWORD}@127.0.0.1:{sentinel}/{{db}};sentinel://127.0.0.1:{down}"
    settings = load_settings(
        {},
        redis_url=urls.format(db=0),
        broker_url=urls.format(db=1),
        redis_sentinel_master=MASTER_NAME,
        redis_sentinel_password=SENTINEL_PASSWORD,
    )
    # When the job store writes through it
    store = JobStore.from_settings(settings)
    store.redis.set("segq:sentinel-check", "1")
    store.redis.close()
    # Then the write landed on the master, in database 0
    direct = redis.Redis(port=master, password=MASTER_PASSWORD, db=0, decode_responses=True)
    assert direct.get("segq:sentinel-check") == "1"
    direct.close()
    # And Celery's broker connection carries a message through the same Sentinel
    app = create_app(settings)
    with app.connection_for_write() as connection:
        payload = round_trip(connection, "segq-sentinel-check")
    assert payload == {"job_id": "j1"}


@pytest.mark.parametrize(("url", "expected"), [
    ("unix:///run/redis.sock", "redis+socket:///run/redis.sock?virtual_host=0"),
    ("unix://:p%40ss@/run/redis.sock?db=3", "redis+socket://:p%40ss@/run/redis.sock?virtual_host=3"),
    ("unix:///run/redis.sock?db=3&password=p@ss", "redis+socket://:p%40ss@/run/redis.sock?virtual_host=3"),
    ("unix:///run/r.sock?username=u&password=pw", "redis+socket://u:pw@/run/r.sock?virtual_host=0"),
    ("redis://127.0.0.1:6379/2", "redis://127.0.0.1:6379/2"),
    ("redis://h:6379/2?password=p@ss", "redis://:p%40ss@h:6379/2"),
    ("rediss://u%40x@h:6380/0?password=pw&ssl_cert_reqs=required",
     "rediss://u%40x:pw@h:6380/0?ssl_cert_reqs=required"),
    ("redis://h:6379/0?db=3", "redis://h:6379/3"),  # redis-py: the query before the path
    ("redis://h?db=3&password=pw", "redis://:pw@h/3"),
    ("amqp://guest:guest@h:5672//", "amqp://guest:guest@h:5672//"),
])  # fmt: skip
def test_a_redis_url_reaches_kombu_with_its_login_and_database_where_kombu_reads_them(
    url, expected
):
    assert kombu_broker_url(url) == expected


def test_job_store_and_broker_share_a_redis_through_its_unix_socket():
    # Given a password-protected redis-server that listens on a unix socket, named by redis-py's
    # unix:// URL with the password as a query (kombu reads none there)
    with start_local_redis(unix_socket=True) as server:
        with redis.Redis(port=server.port) as admin:
            admin.config_set("requirepass", MASTER_PASSWORD)
        url = f"{server.socket_url(db=2)}&password={MASTER_PASSWORD}"
        settings = load_settings({}, redis_url=url)
        # When the job store writes through it
        store = JobStore.from_settings(settings)
        store.redis.set("segq:socket-check", "1")
        store.redis.close()
        # Then the write landed in database 2
        direct = redis.Redis(port=server.port, db=2, password=MASTER_PASSWORD,
                             decode_responses=True)  # fmt: skip
        with direct:
            assert direct.get("segq:socket-check") == "1"
            # And Celery's broker connection (kombu knows no unix://) carries a message
            # through the same socket, in the same database
            with create_app(settings).connection_for_write() as connection:
                assert round_trip(connection, "segq-socket-check") == {"job_id": "j1"}
            assert direct.exists("_kombu.binding.segq-socket-check")
