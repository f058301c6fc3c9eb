"""The load generator: a keep-alive HTTP/1.1 client on asyncio, closed and open loop.

Why Python, and why that is honest here: a model service answers a few hundred to a
few thousand requests a second per core, and this client, which writes pre-built
request bytes and reads back only the status line, headers and body, sustains several
times that on one core (``ceiling()`` measures it against a server that does nothing,
and ``predlog bench`` prints it and warns when a service comes near it). Below its
ceiling, the generator adds the same small delay to both variants, so their ratio is
the service's own. Open-loop latency counts from each request's *scheduled* start, so
a late send is charged to the latency (no coordinated omission).

Nothing here knows about predlog: it sends bodies, each with its own ``X-Request-ID``,
and records latencies and the ids of the requests that succeeded.
"""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Target:
    """Where to send, what, and how to name each request."""

    port: int
    path: str
    bodies: Sequence[bytes]
    id_prefix: str
    #: The header that carries each request's id (the service's request id header).
    id_header: str = "X-Request-ID"


@dataclass
class Slice:
    """What one stretch of load measured."""

    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    ok_ids: list[str] = field(default_factory=list)
    errors: int = 0

    @property
    def throughput(self) -> float:
        return len(self.latencies_ms) / self.seconds if self.seconds > 0 else 0.0


class _Connection:
    """One keep-alive connection; a request is one write and one response read."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> _Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def exchange(self, request: bytes) -> int:
        """Send one request and read its whole response; the status code."""
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = None
        chunked = False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if chunked:
            await self._chunked()
        elif length:
            await self.reader.readexactly(length)
        return status

    async def _chunked(self) -> None:
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await self.reader.readexactly(size + 2)
            if size == 0:
                return

    def close(self) -> None:
        self.writer.close()


class _Requests:
    """The request bytes for request n: the bodies in turn, each with a unique id."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.counter = itertools.count()

    def next(self) -> tuple[str, bytes]:
        n = next(self.counter)
        t = self.target
        body = t.bodies[n % len(t.bodies)]
        request_id = f"{t.id_prefix}-{n}"
        head = (
            f"POST {t.path} HTTP/1.1\r\nHost: 127.0.0.1:{t.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"{t.id_header}: {request_id}\r\n\r\n"
        )
        return request_id, head.encode("ascii") + body


async def _one(conn: _Connection, requests: _Requests, out: Slice, started: float) -> bool:
    """Send one request on ``conn``; False if the connection is now unusable."""
    request_id, request = requests.next()
    try:
        status = await conn.exchange(request)
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
        out.errors += 1
        return False
    if 200 <= status < 300:
        out.latencies_ms.append((time.perf_counter() - started) * 1e3)
        out.ok_ids.append(request_id)
    else:
        out.errors += 1
    return True


async def _closed(requests: _Requests, seconds: float, connections: int) -> Slice:
    out = Slice()
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        conn: _Connection | None = None
        while time.perf_counter() < deadline:
            if conn is None:
                try:
                    conn = await _Connection.open(requests.target.port)
                except OSError:
                    out.errors += 1
                    await asyncio.sleep(0.05)
                    continue
            if not await _one(conn, requests, out, time.perf_counter()):
                conn.close()
                conn = None
        if conn is not None:
            conn.close()

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    out.seconds = time.perf_counter() - began
    return out


async def _open(requests: _Requests, seconds: float, rate: float) -> Slice:
    out = Slice()
    idle: list[_Connection] = []
    tasks: set[asyncio.Task[None]] = set()

    async def send(scheduled: float) -> None:
        try:
            conn = idle.pop() if idle else await _Connection.open(requests.target.port)
        except OSError:
            out.errors += 1
            return
        if await _one(conn, requests, out, scheduled):
            idle.append(conn)
        else:
            conn.close()

    began = time.perf_counter()
    for n in range(int(seconds * rate)):
        scheduled = began + n / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(send(scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=30)
    out.seconds = time.perf_counter() - began
    for conn in idle:
        conn.close()
    return out


def closed_loop(target: Target, seconds: float, connections: int) -> Slice:
    """``connections`` clients, each sending its next request as soon as one returns."""
    return asyncio.run(_closed(_Requests(target), seconds, connections))


def open_loop(target: Target, seconds: float, rate: float) -> Slice:
    """Requests at a fixed arrival rate, whatever the server's speed; latency from the
    scheduled start."""
    return asyncio.run(_open(_Requests(target), seconds, rate))


#: A server that reads a request and answers 200 at once: the generator's ceiling.
_TRIVIAL = r"""
import asyncio, sys
REPLY = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}"
async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            writer.write(REPLY)
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]))
    print("ready", flush=True)
    await server.serve_forever()
asyncio.run(main())
"""


def ceiling(port: int, bodies: Sequence[bytes], seconds: float, connections: int) -> float:
    """Requests a second this generator reaches against a server that does no work."""
    proc = subprocess.Popen(  # noqa: S603  # our own interpreter and script
        [sys.executable, "-c", _TRIVIAL, str(port)], stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        target = Target(port, "/", bodies, "ceiling")
        return closed_loop(target, seconds, connections).throughput
    finally:
        proc.terminate()
        proc.wait()
