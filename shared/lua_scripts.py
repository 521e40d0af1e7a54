"""Loads segq's Lua scripts once per Redis client.

Scripts live in ``shared/lua/``; a line ``-- include: NAME.lua`` pastes a shared file in its
place, so the rate functions are written once and used by every script that spends budget.
Each script's header documents its KEYS and ARGV.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

from redis.commands.core import AsyncScript, Script

_INCLUDE = "-- include: "


@functools.cache
def script_source(name: str) -> str:
    """The text of ``shared/lua/{name}.lua`` with its includes pasted in."""
    text = resources.files("shared").joinpath("lua", f"{name}.lua").read_text()
    lines = []
    for line in text.splitlines():
        if line.startswith(_INCLUDE):
            lines.append(script_source(line[len(_INCLUDE) :].removesuffix(".lua")))
        else:
            lines.append(line)
    return "\n".join(lines)


class Scripts:
    """The named scripts registered on one client (sync or asyncio); EVALSHA with reload."""

    def __init__(self, redis: Any) -> None:
        self._redis = redis
        self._registered: dict[str, Script | AsyncScript] = {}

    def __getitem__(self, name: str) -> Script | AsyncScript:
        if name not in self._registered:
            self._registered[name] = self._redis.register_script(script_source(name))
        return self._registered[name]
