"""Running the sandbox: in-process on its own thread (tests, the demo) or in the foreground.

Both listen on a socket made here: bound to loopback unless told otherwise, with a listen
backlog of 1024 (a burst of new connections must not wait on a full queue, see http-notes.md).
aiohttp is asyncio, which sets TCP_NODELAY on every accepted connection, so answers never wait
on Nagle's algorithm. Access logging is off unless asked for: it costs a fifth of a poll.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from shared.sandbox.app import build_app
from shared.sandbox.config import SandboxConfig
from shared.sandbox.state import SandboxState

DEFAULT_HOST = "127.0.0.1"
LISTEN_BACKLOG = 1024
SHUTDOWN_TIMEOUT_S = 0.5
"""How long a stop waits for answers under way (a slow answer is cut short)."""
CALL_TIMEOUT_S = 30.0

T = TypeVar("T")


async def open_site(
    state: SandboxState, host: str, port: int, access_log: bool = False
) -> tuple[web.AppRunner, str]:
    """Serve ``state`` on ``host:port`` (0: any free port); returns the runner and the URL."""
    runner = web.AppRunner(
        build_app(state),
        access_log=logging.getLogger("aiohttp.access") if access_log else None,
        shutdown_timeout=SHUTDOWN_TIMEOUT_S,
    )
    await runner.setup()
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.create_server((host, port), family=family, backlog=LISTEN_BACKLOG)
        await web.SockSite(runner, sock, backlog=LISTEN_BACKLOG).start()
    except BaseException:
        await runner.cleanup()
        raise
    bound_host, bound_port = sock.getsockname()[:2]
    shown_host = f"[{bound_host}]" if family == socket.AF_INET6 else bound_host
    return runner, f"http://{shown_host}:{bound_port}"


class RunningSandbox:
    """A sandbox serving on a thread of its own; stop it (or use ``with``) when done.

    ``truth()``, ``set_faults()`` and ``reset()`` do what the control API does, without HTTP,
    on the sandbox's thread (its state belongs to that thread).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        thread: threading.Thread,
        runner: web.AppRunner,
        state: SandboxState,
        url: str,
    ) -> None:
        self.url = url
        self._loop = loop
        self._thread = thread
        self._runner = runner
        self._state = state

    def __enter__(self) -> RunningSandbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def config(self) -> SandboxConfig:
        return self._call(lambda: self._state.config)

    def truth(
        self, request_ids: list[str] | None = None, with_requests: bool = True
    ) -> dict[str, Any]:
        return self._call(lambda: self._state.truth(request_ids, with_requests))

    def set_faults(self, **patch: Any) -> SandboxConfig:
        """Change any knobs (pydantic's ValidationError if invalid)."""
        return self._call(lambda: self._state.apply_patch(patch))

    def reset(self) -> int:
        return self._call(self._state.reset)

    def _call(self, function: Callable[[], T]) -> T:
        async def on_loop() -> T:
            return function()

        return asyncio.run_coroutine_threadsafe(on_loop(), self._loop).result(CALL_TIMEOUT_S)

    def stop(self) -> None:
        """Close the listener and every connection, end the thread; safe to call twice."""
        if not self._thread.is_alive():
            return
        cleanup = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
        try:
            cleanup.result(CALL_TIMEOUT_S)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(CALL_TIMEOUT_S)
            self._state.close()


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Run until stopped, then end what is left (a slow answer to a client that went away
    outlives the server's shutdown) the way ``asyncio.run`` does, so nothing warns."""
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        leftovers = asyncio.all_tasks(loop)
        for task in leftovers:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


def start_sandbox(
    config: SandboxConfig | None = None, host: str = DEFAULT_HOST, port: int = 0
) -> RunningSandbox:
    """Start a sandbox on a new thread and event loop; returns once it accepts connections."""
    state = SandboxState(config or SandboxConfig())
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=_run_loop, args=(loop,), name="segq-sandbox", daemon=True)
    thread.start()
    opening = asyncio.run_coroutine_threadsafe(open_site(state, host, port), loop)
    try:
        runner, url = opening.result(CALL_TIMEOUT_S)
    except BaseException:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(CALL_TIMEOUT_S)
        state.close()
        raise
    return RunningSandbox(loop, thread, runner, state, url)


def serve_forever(
    config: SandboxConfig,
    host: str = DEFAULT_HOST,
    port: int = 0,
    access_log: bool = False,
    announce: Callable[[str], None] = print,
) -> None:
    """Serve in the foreground until SIGINT or SIGTERM; ``announce`` gets the URL once bound."""
    asyncio.run(_serve(config, host, port, access_log, announce))


async def _serve(
    config: SandboxConfig,
    host: str,
    port: int,
    access_log: bool,
    announce: Callable[[str], None],
) -> None:
    state = SandboxState(config)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    try:
        runner, url = await open_site(state, host, port, access_log)
        try:
            announce(url)
            await stopping.wait()
        finally:
            await runner.cleanup()
    finally:
        state.close()
