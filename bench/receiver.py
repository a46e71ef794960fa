"""The bench's webhook receiver: one asyncio process per core sharing a port.

Run as ``python -m bench.receiver PORT LOGDIR``. Every process binds the same
port with SO_REUSEPORT, so the kernel spreads connections over them; each is
a bare ``asyncio.Protocol`` that parses just enough HTTP/1.1 (request line,
Content-Length, webhook-id) to answer ``200 ok`` on a kept-alive connection.
That costs a few tens of microseconds per request, so the receiver stays far
from being what a scenario measures (its CPU time is reported to prove it).

What it records, per process, in LOGDIR:

* ``arrivals-<pid>.log``: one line per request, ``<time.time()> <path>
  <webhook-id>``, written with one ``os.write`` so the bench can tail the
  file while the scenario runs;
* ``samples-<pid>.jsonl``: every ``SAMPLE_EVERY``-th request whole (headers
  and body), so the bench can verify signatures as a real receiver would.

A request whose path ends with ``/hang`` is answered only after
``HANG_SECONDS``: the "receiver hangs" scenario.
"""

import asyncio
import base64
import json
import os
import socket
import sys
import time

SAMPLE_EVERY = 25
HANG_SECONDS = 30.0
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


class Recorder:
    """The two per-process files, written without buffering."""

    def __init__(self, logdir: str):
        pid = os.getpid()
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        self.arrivals = os.open(os.path.join(logdir, f"arrivals-{pid}.log"), flags, 0o644)
        self.samples = os.open(os.path.join(logdir, f"samples-{pid}.jsonl"), flags, 0o644)
        self.count = 0

    def record(self, at: float, path: str, headers: dict, body: bytes) -> None:
        self.count += 1
        webhook_id = headers.get("webhook-id", "-")
        os.write(self.arrivals, f"{at:.6f} {path} {webhook_id}\n".encode())
        if self.count % SAMPLE_EVERY == 0:
            line = {"path": path, "headers": headers, "body": base64.b64encode(body).decode()}
            os.write(self.samples, (json.dumps(line) + "\n").encode())


class HTTPReceiver(asyncio.Protocol):
    """One connection: parse requests from the byte stream, answer each."""

    def __init__(self, recorder: Recorder):
        self.recorder = recorder
        self.buffer = b""
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        # Taken before parsing: the arrival time is when the bytes came in.
        at = time.time()
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = self.buffer[:end].decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", 0))
            total = end + 4 + length
            if len(self.buffer) < total:
                return  # the body is still on its way
            body = self.buffer[end + 4 : total]
            self.buffer = self.buffer[total:]
            path = lines[0].split(" ")[1] if " " in lines[0] else "/"
            self.recorder.record(at, path, headers, body)
            if path.endswith("/hang"):
                asyncio.get_running_loop().call_later(HANG_SECONDS, self._reply)
            else:
                self._reply()

    def _reply(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(RESPONSE)

    def connection_lost(self, exc):
        self.transport = None


def listening_socket(port: int) -> socket.socket:
    """A socket on 127.0.0.1:port that other processes may bind too."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(1024)
    return sock


async def serve(port: int, logdir: str) -> None:
    recorder = Recorder(logdir)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: HTTPReceiver(recorder), sock=listening_socket(port))
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]), sys.argv[2]))
