"""`segq metrics`: serves the fleet's job metrics (``shared.metrics``) for Prometheus.

One exporter serves the whole fleet: the numbers live in Redis, not in this process, so run
one (or two behind a Service; they answer the same). It binds to loopback unless told
otherwise: the numbers name no secret, but nothing outside the host should need them except
the Prometheus server.
"""

from __future__ import annotations

import signal
import time
from types import FrameType
from wsgiref.simple_server import WSGIServer

import click
import redis
from prometheus_client import CollectorRegistry, start_http_server

from shared.logging_setup import configure_logging
from shared.metrics import FleetCollector
from shared.redis_connection import redis_client
from shared.settings import get_settings

DEFAULT_PORT = 9808


def serve_metrics(client: redis.Redis, host: str, port: int) -> WSGIServer:
    """Starts serving ``/metrics`` in a background thread; ``port=0`` picks a free port
    (``server.server_port``). Stop it with ``server.shutdown(); server.server_close()``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(client))
    server, _ = start_http_server(port, addr=host, registry=registry)
    return server


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=click.IntRange(0, 65535),
              help="TCP port.")  # fmt: skip
def metrics(host: str, port: int) -> None:
    """Serve the fleet's job metrics at http://HOST:PORT/metrics until SIGTERM or Ctrl-C."""
    settings = get_settings()
    configure_logging(settings)
    client = redis_client(settings)
    server = serve_metrics(client, host, port)
    click.echo(f"segq metrics: serving http://{host}:{server.server_port}/metrics", err=True)
    signal.signal(signal.SIGTERM, _exit_quietly)
    signal.signal(signal.SIGINT, _exit_quietly)
    try:
        while True:
            time.sleep(3600)
    finally:
        server.shutdown()
        server.server_close()
        client.close()


def _exit_quietly(signum: int, _frame: FrameType | None) -> None:
    """SIGTERM (systemd, Kubernetes, docker stop) and Ctrl-C end the process with status 0."""
    raise SystemExit(0)
