"""The like-for-like ceiling: ``python -m bench.rawclient URL N CONCURRENCY SECRET START``.

One process keeping CONCURRENCY keep-alive requests in flight over raw
sockets (``selectors``), as the drain keeps ``HOOKLINE_SEND_CONCURRENCY``
in flight. Each request's bytes are built when it is sent, with a fresh
Standard Webhooks signature (id, timestamp, HMAC-SHA256 over
``id.timestamp.body``) and Hookline's headers, so the ceiling pays the
same signing a delivery does. Sends N requests in all, starting at the
Unix time START; prints ``<sent> <first send> <last answer>`` (Unix times).
"""

import base64
import hashlib
import hmac
import selectors
import socket
import sys
import time
from urllib.parse import urlsplit

from bench.scenarios import ceiling_body


def request_bytes(host: str, path: str, key: bytes, body: bytes, msg_id: str) -> bytes:
    """One signed POST, as Hookline would send it (Standard Webhooks v1 signature)."""
    stamp = str(int(time.time()))
    mac = hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    signature = "v1," + base64.b64encode(mac).decode()
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Hookline/0.1.0\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"webhook-id: {msg_id}\r\nwebhook-timestamp: {stamp}\r\n"
            f"webhook-signature: {signature}\r\nX-Api-Key: sk_bench_0123456789\r\n\r\n")
    return head.encode() + body


def run(url: str, n: int, concurrency: int, secret: str, start_at: float) -> tuple[int, float, float]:
    """Send ``n`` requests over ``concurrency`` connections; return (sent, first, last)."""
    parts = urlsplit(url)
    host, port, path = parts.hostname, parts.port, parts.path
    key = base64.b64decode(secret.removeprefix("whsec_"))
    body = ceiling_body()
    sel = selectors.DefaultSelector()
    socks = []
    for _ in range(min(concurrency, n)):
        sock = socket.create_connection((host, port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        socks.append(sock)
    while time.time() < start_at:
        time.sleep(0.001)
    started = time.time()
    issued = answered = 0
    buffers: dict = {}
    for sock in socks:
        sock.send(request_bytes(host, path, key, body, f"msg_raw{issued}"))  # small: one send
        issued += 1
        buffers[sock] = b""
        sel.register(sock, selectors.EVENT_READ)
    while answered < issued:
        for key_, _ in sel.select(timeout=10):
            sock = key_.fileobj
            data = sock.recv(65536)
            if not data:
                raise RuntimeError("the receiver closed a connection")
            buf = buffers[sock] + data
            # The bench receiver answers a fixed 2-byte "ok": count complete replies.
            while (end := buf.find(b"\r\n\r\n")) >= 0 and len(buf) >= end + 6:
                buf = buf[end + 6:]
                answered += 1
                if issued < n:
                    sock.send(request_bytes(host, path, key, body, f"msg_raw{issued}"))
                    issued += 1
            buffers[sock] = buf
    finished = time.time()
    for sock in socks:
        sel.unregister(sock)
        sock.close()
    return answered, started, finished


if __name__ == "__main__":
    url, n, concurrency, secret, start_at = sys.argv[1:6]
    sent, first, last = run(url, int(n), int(concurrency), secret, float(start_at))
    print(sent, f"{first:.6f}", f"{last:.6f}")
