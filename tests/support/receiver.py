"""A real HTTP receiver on 127.0.0.1 for delivery tests: records every request.

Responses are scripted: ``receiver.respond(500, 500)`` makes the next two
requests fail, then the default (200) applies again. For load tests,
``receiver.fail_at_random(0.2, seed=6)`` makes a fifth of the unscripted
requests fail with a 500, drawn from a seeded generator so a run's sequence
of failures can be replayed.
"""

import random
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    """One request as the receiver saw it."""

    method: str
    path: str
    headers: dict  # lower-cased names
    body: bytes
    at: float = field(default_factory=time.time)
    status: int = 0  # the status the receiver answered with

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class _QuietServer(ThreadingHTTPServer):
    """Says nothing when a client hangs up: a sender that gave up at its deadline
    is a normal event, and a traceback printed seconds later from this thread
    would land in whatever a later test is capturing (a CLI runner's output).

    It listens with a backlog of 128, as real servers do (nginx 511, gunicorn
    2048): with socketserver's default of 5, eight connects arriving at once
    overflow it and the kernel drops the extra SYNs, which costs those
    requests a 1 s SYN retry."""

    request_queue_size = 128

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@dataclass
class Reply:
    status: int = 200
    headers: dict = field(default_factory=dict)
    body: bytes = b"ok"
    delay: float = 0.0
    reason: str | None = None  # the status line's reason phrase (None: the standard one)


class Receiver:
    """A threaded HTTP server that records requests and plays scripted replies."""

    def __init__(self):
        self.requests: list[Received] = []
        self.replies: deque[Reply] = deque()
        self.default = Reply()
        # Replies scripted for one event (by webhook-id), before the general script.
        self.by_event: dict[str, deque[Reply]] = {}
        # Random failures (off by default): see fail_at_random().
        self.fail_rate = 0.0
        self.failure = Reply(500, body=b"injected failure")
        self.rng = random.Random(0)
        self.failures_injected = 0
        # How many requests were being answered at once, at most (side-by-side sending).
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, like real receivers
            # TCP_NODELAY, as nginx and most servers set it: otherwise the body,
            # written after the headers, waits ~40 ms for the client's delayed ACK.
            disable_nagle_algorithm = True

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._lock:
                    receiver.in_flight += 1
                    receiver.max_in_flight = max(receiver.max_in_flight, receiver.in_flight)
                    reply = receiver._next_reply(self.headers.get("webhook-id"))
                    # Recorded under the lock, so the list's order is the order
                    # in which the receiver answered.
                    receiver.requests.append(Received(
                        self.command, self.path,
                        {k.lower(): v for k, v in self.headers.items()}, body,
                        status=reply.status))
                if reply.delay:
                    time.sleep(reply.delay)
                self.send_response(reply.status, reply.reason)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                with receiver._lock:
                    receiver.in_flight -= 1
                self.wfile.write(reply.body)

            do_GET = do_POST

            def log_message(self, *args):
                pass

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        # A short poll interval: close() waits up to one interval for the loop to notice.
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/hooks/calls"

    def _next_reply(self, event_id: str | None = None) -> Reply:
        """The event's scripted reply if any, the scripted one, else a random failure or the default; needs the lock."""
        if self.by_event.get(event_id):
            return self.by_event[event_id].popleft()
        if self.replies:
            return self.replies.popleft()
        if self.fail_rate and self.rng.random() < self.fail_rate:
            self.failures_injected += 1
            return self.failure
        return self.default

    def fail_at_random(self, rate: float, seed: int = 0, reply: Reply | None = None) -> None:
        """Answer a ``rate`` share of unscripted requests with ``reply`` (a 500 by default).

        The draws come from ``random.Random(seed)``: the same seed gives the
        same sequence of failures (which request gets which draw still
        depends on the order the senders' requests arrive in).
        """
        with self._lock:
            self.fail_rate = rate
            self.rng = random.Random(seed)
            if reply is not None:
                self.failure = reply

    def respond(self, *replies) -> None:
        """Queue replies: ints are status codes, or pass Reply objects."""
        with self._lock:
            for r in replies:
                self.replies.append(r if isinstance(r, Reply) else Reply(status=r))

    def respond_to(self, event_id: str, *replies) -> None:
        """Queue replies for the requests carrying ``webhook-id: event_id`` only."""
        with self._lock:
            queue = self.by_event.setdefault(event_id, deque())
            for r in replies:
                queue.append(r if isinstance(r, Reply) else Reply(status=r))

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Received]:
        """Wait until ``count`` requests arrived; return them (fails on timeout)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if len(self.requests) >= count:
                return list(self.requests)
            time.sleep(0.02)
        raise AssertionError(f"receiver got {len(self.requests)} requests, expected {count}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
