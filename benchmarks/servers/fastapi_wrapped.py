"""The app of fastapi_bare.py under a middleware that wraps receive and send as
predlog's does, and adds one response header, but logs nothing; for bench_fastapi.py.

It never imports predlog: what it costs over bare is what uvicorn and the app pay for
any such middleware (an extra coroutine per receive, a function per send, one header
more to write), apart from predlog's own work.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from benchmarks.servers.fastapi_bare import app

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]


class Wrapping:
    """Pure ASGI: keep references to the bodies, add ``x-request-id`` to the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        kept: list[bytes] = []
        echo = (b"x-request-id", b"0123456789abcdef0123456789abcdef")

        async def receive_and_keep() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                kept.append(message.get("body", b""))
            return message

        def send_and_keep(message: Message) -> Awaitable[None]:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), echo]
            else:
                kept.append(message.get("body", b""))
            return send(message)

        await self.app(scope, receive_and_keep, send_and_keep)


app.add_middleware(Wrapping)
