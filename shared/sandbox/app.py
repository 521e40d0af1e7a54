"""The aiohttp application: which path and verb reach which handler.

Paths: ``POST /v2/{slug}``, ``GET /v2/requests/{request_id}/status``,
``GET /v2/requests/{request_id}``, ``GET /media/{request_id}/{index}.{ext}``, the control API
under ``/_sandbox/``; any other verb on a v2 path answers 405 HTML, any other path 404 JSON.
"""

from __future__ import annotations

from aiohttp import web

from shared.sandbox.api import UpstreamApi
from shared.sandbox.control import ControlApi
from shared.sandbox.state import SandboxState


def build_app(state: SandboxState) -> web.Application:
    """An application serving ``state``; the caller runs it and closes ``state`` after."""
    app = web.Application()
    api = UpstreamApi(state)
    control = ControlApi(state)
    v2_routes = (
        ("/v2/requests/{request_id}/status", "GET", api.status),
        ("/v2/requests/{request_id}", "GET", api.result),
        ("/v2/{slug}", "POST", api.submit),
    )
    for path, method, handler in v2_routes:
        resource = app.router.add_resource(path)
        resource.add_route(method, handler)
        resource.add_route("*", api.not_allowed)
    app.router.add_get("/media/{request_id}/{name}", api.media)
    app.router.add_get("/_sandbox/truth", control.truth)
    app.router.add_get("/_sandbox/faults", control.faults)
    app.router.add_post("/_sandbox/faults", control.patch_faults)
    app.router.add_post("/_sandbox/reset", control.reset)
    app.router.add_route("*", "/{path:.*}", api.unknown_path)
    return app
