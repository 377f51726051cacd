"""An HTTP fault proxy between the stream job and the scoring service.

It forwards each request on its own upstream keep-alive connection, or, by mode, delays it
(``slow``: latency above the job's timeout), answers it with a 500 (``error``), or drops the
connection (``drop``). Only HTTP/1.1 with ``Content-Length`` bodies is spoken: what the job's
client and uvicorn use. The fault suite flips the mode mid-stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from enum import StrEnum

_ERROR_BODY = b'{"detail":"injected by the fault proxy"}'
_ERROR = (
    b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\n"
    b"content-length: " + str(len(_ERROR_BODY)).encode() + b"\r\n\r\n" + _ERROR_BODY
)


class Mode(StrEnum):
    PASS = "pass"
    SLOW = "slow"
    ERROR = "error"
    DROP = "drop"


async def _message(reader: asyncio.StreamReader) -> bytes:
    """One HTTP message (head and ``Content-Length`` body); empty at end of stream."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return b""
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    return head + (await reader.readexactly(length) if length else b"")


class FaultProxy:
    """Listens on ``127.0.0.1:<port>`` (a free one by default) and forwards to ``upstream``."""

    def __init__(self, upstream_host: str, upstream_port: int, delay_s: float = 1.0) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.delay_s = delay_s
        self.mode = Mode.PASS
        # Requests handled in each mode: what shows that a mode really met traffic.
        self.handled: dict[Mode, int] = dict.fromkeys(Mode, 0)
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fault-proxy", daemon=True)
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while request := await _message(reader):
                mode = self.mode
                self.handled[mode] += 1
                if mode is Mode.DROP:
                    return
                if mode is Mode.ERROR:
                    writer.write(_ERROR)
                    await writer.drain()
                    continue
                if mode is Mode.SLOW:
                    await asyncio.sleep(self.delay_s)
                if upstream is None:
                    upstream = await asyncio.open_connection(*self.upstream)
                upstream[1].write(request)
                await upstream[1].drain()
                response = await _message(upstream[0])
                if not response:
                    return
                writer.write(response)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            return
        finally:
            for w in (writer, upstream[1] if upstream else None):
                if w is not None:
                    with contextlib.suppress(Exception):
                        w.close()
