"""The sandbox: a local server that speaks Segmind's v2 async protocol, faults on demand.

It stands in for ``https://api.segmind.com`` in the demo, the integration tests and every
benchmark. Modules: ``config`` (every knob), ``jobs`` (simulated GPUs and time), ``images``
(Pillow outputs), ``account`` (keys, credits), ``rate_limit``, ``faults``, ``answers`` (HTTP
shapes), ``api`` (v2 handlers), ``control`` (``/_sandbox/`` handlers), ``truth`` (ground
truth), ``state``, ``app`` (routes) and ``runner`` (in-process and foreground).

    with start_sandbox(SandboxConfig(time_scale=0.02)) as sandbox:
        base_url = sandbox.url            # e.g. http://127.0.0.1:40123
        sandbox.set_faults(submit_rpm=5)  # or POST /_sandbox/faults {"submit_rpm": 5}
        totals = sandbox.truth()["totals"]
"""

from shared.sandbox.config import SandboxConfig
from shared.sandbox.runner import RunningSandbox, serve_forever, start_sandbox

__all__ = ["RunningSandbox", "SandboxConfig", "serve_forever", "start_sandbox"]
