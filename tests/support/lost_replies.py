"""Replies lost on their way back: Redis ran the command, the connection broke before the
client read the answer, and redis-py (``RECONNECTS``) sends the command again."""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio


class ReplyLoss:
    """Breaks the connection after the next script call (EVALSHA) has run, once per ``arm``."""

    def __init__(self) -> None:
        self.armed = 0

    def arm(self) -> None:
        self.armed += 1

    def take(self, sent_script: bool) -> bool:
        if not (sent_script and self.armed):
            return False
        self.armed -= 1
        return True

    def lose_on(self, client: Any) -> None:
        """Makes the connections ``client`` opens from now on lose replies when armed (call it
        before the client's first command: connections already open keep their class)."""
        pool = client.connection_pool
        make = async_lossy if isinstance(client, redis.asyncio.Redis) else lossy
        pool.connection_class = make(pool.connection_class, self)


def sends_script(command: Any) -> bool:
    chunks = command if isinstance(command, list | tuple) else [command]
    return b"EVALSHA" in b"".join(bytes(chunk) for chunk in chunks).upper()


def lossy(base: type, loss: ReplyLoss) -> type:
    class LosesReplies(base):  # type: ignore[misc, valid-type]
        sent_script = False

        def send_packed_command(self, command: Any, *args: Any, **kwargs: Any) -> None:
            self.sent_script = sends_script(command)
            super().send_packed_command(command, *args, **kwargs)

        def read_response(self, *args: Any, **kwargs: Any) -> Any:
            reply = super().read_response(*args, **kwargs)
            if loss.take(self.sent_script):
                self.disconnect()
                raise redis.ConnectionError("the reply was lost (test)")
            return reply

    return LosesReplies


def async_lossy(base: type, loss: ReplyLoss) -> type:
    class LosesReplies(base):  # type: ignore[misc, valid-type]
        sent_script = False

        async def send_packed_command(self, command: Any, *args: Any, **kwargs: Any) -> None:
            self.sent_script = sends_script(command)
            await super().send_packed_command(command, *args, **kwargs)

        async def read_response(self, *args: Any, **kwargs: Any) -> Any:
            reply = await super().read_response(*args, **kwargs)
            if loss.take(self.sent_script):
                await self.disconnect()
                raise redis.ConnectionError("the reply was lost (test)")
            return reply

    return LosesReplies
