"""The one HTTP client that delivers webhooks.

Every delivery, from the RQ worker or from the "send test event" button,
goes through :class:`Sender`.  It is written for URLs typed by strangers:

* it never raises for network trouble; :meth:`Sender.post` returns a
  :class:`SendResult` whose ``error_kind``/``error_message`` say what went
  wrong in words a person can act on;
* it connects only to addresses the SSRF guard (:mod:`tasks.netguard`)
  vetted, and to exactly those addresses: the name is resolved once, checked,
  and the socket is opened to the checked address, while the Host header and
  the TLS SNI/certificate check still use the hostname;
* the whole exchange has one deadline, so a receiver that drips a byte per
  second cannot hold a worker for longer;
* it keeps at most 4096 bytes of the reply and hangs up on larger ones
  instead of downloading them;
* :meth:`Sender.post_many` keeps several requests in flight from one
  thread, each on its own connection, reading each answer as it arrives;
* it keeps connections alive between deliveries to the same receiver, and
  speaks through the standard library's http.client with a small pool of
  its own: urllib3's PoolManager (what requests uses) cost about twice the
  CPU of the bare exchange per POST, a quarter of the worker's CPU per
  delivery, and we used none of what it adds (retries, redirects,
  proxies, decompression).

The module is pure: no Flask, no app code, plain arguments only.  Build one
``Sender`` per process (after any fork: pooled sockets must not be shared by
two processes) and reuse it; it is safe to share between threads.
"""

import collections
import email.utils
import functools
import heapq
import http.client
import itertools
import logging
import os
import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import quote, urlsplit

import certifi

# The custom headers' rules (reserved names, valid names and values) are the
# settings' own: one list for the form, the CLI and the sender.
from models.rules import RESERVED_HEADERS, is_reserved_header, is_sendable_header  # noqa: F401

from . import netguard

log = logging.getLogger(__name__)

#: How much of a receiver's reply is kept (and read).
BODY_LIMIT = 4096

@dataclass
class SendResult:
    """What happened to one delivery attempt."""

    ok: bool
    status_code: int | None = None
    duration_ms: float = 0.0
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: str = ""
    error_kind: str | None = None
    error_message: str | None = None
    retry_after: float | None = None
    #: When the request began (``time.time()``): the attempt's start in the log.
    started_at: float = 0.0


# -- headers -----------------------------------------------------------------


def _header_is_safe(name, value):
    # Defence in depth: the form validates headers too, but a row written by
    # an older version or by hand must not be able to inject a header line.
    return is_sendable_header(name, value)


def _header_items(headers):
    if hasattr(headers, "items"):
        return list(headers.items())
    return list(headers or ())


def build_headers(user_agent, signature_headers, custom_headers=()):
    """Return the request headers, in sending order.

    Reserved headers come first: Content-Type, User-Agent, then the
    ``webhook-*`` signature headers.  Custom headers (a dict or a list of
    pairs) follow, except reserved names (case-insensitive) and any header
    whose name is not an HTTP token or whose value holds CR, LF, NUL or
    another control character; those are skipped and logged.
    """
    headers = {"Content-Type": "application/json", "User-Agent": user_agent}
    for name, value in _header_items(signature_headers):
        if not name.lower().startswith("webhook-"):
            raise ValueError(f"not a signature header: {name!r}")
        headers[name] = str(value)
    for name, value in _header_items(custom_headers):
        name, value = str(name).strip(), str(value).strip()
        if is_reserved_header(name):
            log.warning("custom header %r skipped: reserved name", name)
        elif not _header_is_safe(name, value):
            log.warning("custom header %r skipped: unsafe name or value", name)
        else:
            headers[name] = value
    return headers


# -- the deadline ------------------------------------------------------------
#
# Socket timeouts apply to each socket operation, so a receiver
# sending one byte every second never trips them.  The deadline is therefore
# enforced by a watchdog: a thread that, when an exchange's deadline passes,
# shuts down the socket of the connection in use.  shutdown() from another
# thread wakes a recv()/send()/TLS handshake blocked on that socket at once,
# for plain and TLS sockets alike (a per-recv socket wrapper would not see
# the reads the ssl module does in C).  One watchdog thread per process
# keeps every in-flight deadline in a heap: a threading.Timer per delivery
# cost 120 us to start and cancel here, a sixth of a whole keep-alive POST.
# After a fork the child starts its own (threads do not survive a fork).
# The per-operation timeouts stay as a second net, each capped by the time
# left.
#
# The connection classes below find the current delivery's deadline through
# a thread-local, since http.client gives no way to hand it down a request.

_local = threading.local()


def _current_exchange():
    return getattr(_local, "exchange", None)


class _Watchdog:
    """This process's deadline thread: fires each exchange whose deadline passed."""

    def __init__(self):
        self._cond = threading.Condition()
        self._heap = []  # (expires, sequence number, exchange); finished ones are skipped
        self._sequence = itertools.count()
        thread = threading.Thread(target=self._run, name="hookline-deadline", daemon=True)
        thread.start()

    def watch(self, exchange):
        """Fire ``exchange`` at its deadline unless it has finished by then."""
        with self._cond:
            heapq.heappush(self._heap, (exchange.expires, next(self._sequence), exchange))
            if self._heap[0][2] is exchange:
                self._cond.notify()  # the new deadline is the earliest: re-arm

    def _run(self):
        while True:
            with self._cond:
                while True:
                    while self._heap and self._heap[0][2].finished:
                        heapq.heappop(self._heap)
                    if not self._heap:
                        self._cond.wait()
                        continue
                    wait = self._heap[0][0] - time.monotonic()
                    if wait <= 0:
                        exchange = heapq.heappop(self._heap)[2]
                        break
                    self._cond.wait(wait)
            exchange.fire()


_watchdog = None
_watchdog_lock = threading.Lock()


def _reset_watchdog_after_fork():
    global _watchdog, _watchdog_lock
    _watchdog, _watchdog_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_reset_watchdog_after_fork)


def _get_watchdog():
    global _watchdog
    with _watchdog_lock:
        if _watchdog is None:
            _watchdog = _Watchdog()
        return _watchdog


class _Exchange:
    """The deadline of one request: which sockets to cut and whether we did."""

    def __init__(self, seconds):
        self.seconds = seconds
        self.expires = time.monotonic() + seconds
        self.fired = False
        self.finished = False
        self._lock = threading.Lock()
        self._conn = None
        self._sockets = []

    def start(self):
        """Hand the exchange to the watchdog; return it."""
        _get_watchdog().watch(self)
        return self

    def remaining(self):
        """Seconds left before the deadline (may be negative)."""
        return self.expires - time.monotonic()

    def watch(self, conn):
        """Remember ``conn`` (and its socket) as the thing to cut."""
        with self._lock:
            self._conn = conn
            if conn.sock is not None:
                # http.client drops conn.sock after a "Connection: close"
                # reply while the body is still read from it: keep our own.
                self._sockets.append(conn.sock)
            fired = self.fired
        if fired:
            raise TimeoutError(f"deadline of {self.seconds:g} s passed")

    def finish(self):
        """Stand the watchdog down; return True if it fired first."""
        with self._lock:
            self.finished = True
        return self.fired

    def fire(self):
        """The deadline passed: cut the connection in use (the watchdog calls this)."""
        with self._lock:
            if self.finished:
                return
            self.fired = True
            sockets = list(self._sockets)
            if self._conn is not None and self._conn.sock is not None:
                sockets.append(self._conn.sock)
        for sock in sockets:
            _cut(sock)


def _cut(sock):
    # socket.socket.shutdown, not SSLSocket.shutdown: we want the TCP
    # connection torn down under the reader's feet, not a polite TLS
    # close_notify exchange with the (possibly stalling) peer.
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass  # already closed


# -- connecting to vetted addresses ------------------------------------------


def _resolve_unchecked(host, port):
    """Resolve without the SSRF guard (``block_private=False``)."""
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)


def _lookup(resolver, host, port, timeout):
    """Run ``resolver(host, port)``, giving up after ``timeout`` seconds.

    getaddrinfo cannot be interrupted, so it runs in a helper thread; a
    stuck DNS server then costs that thread a few seconds, not the delivery.
    """
    outcome = {}

    def work():
        try:
            outcome["infos"] = resolver(host, port)
        except BaseException as exc:  # handed to the caller below
            outcome["error"] = exc

    worker = threading.Thread(target=work, name="hookline-dns", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise TimeoutError(f"DNS lookup of {host} timed out")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["infos"]


def _open_socket(info, timeout):
    """Connect a new socket to one getaddrinfo entry."""
    family, type_, proto, _, sockaddr = info
    sock = socket.socket(family, type_, proto)
    try:
        sock.settimeout(timeout)
        sock.connect(sockaddr)
    except BaseException:
        sock.close()
        raise
    return sock


class _VettedConnectionMixin:
    """http.client connection that connects only to addresses ``resolver`` vetted.

    http.client's own ``connect`` hands the hostname to
    ``socket.create_connection``, which resolves it again: a name could
    answer a public address to the check and 127.0.0.1 to the connect (DNS
    rebinding).  Here the name is resolved exactly once, by ``resolver``
    (``netguard.resolve_checked`` when guarding), and the socket is opened to
    those very addresses.  ``self.host`` is untouched, so the Host header,
    TLS SNI and certificate hostname check still use the name.
    """

    def __init__(self, host, port, resolver, **kwargs):
        super().__init__(host, port, **kwargs)
        self._resolver = resolver
        self._create_connection = self._connect_vetted

    def _time_left(self):
        exchange = _current_exchange()
        if exchange is None:
            return self.timeout
        remaining = exchange.remaining()
        if remaining <= 0:
            raise TimeoutError("deadline passed before connecting")
        return min(self.timeout, remaining)

    def _connect_vetted(self, address, timeout, source_address=None):
        # Stands in for socket.create_connection: try each vetted address in
        # turn, the connect capped by the time the exchange has left.
        host, port = address
        infos = _lookup(self._resolver, host, port, self._time_left())
        error = OSError(f"no address found for {host}")
        for info in infos:
            try:
                sock = _open_socket(info, self._time_left())
            except OSError as exc:
                error = exc
            else:
                sock.settimeout(timeout)
                return sock
        raise error

    def connect(self):
        exchange = _current_exchange()
        if exchange is not None:
            exchange.watch(self)  # conn.sock is read again when the watchdog fires
        super().connect()
        if exchange is not None:
            exchange.watch(self)  # the final (possibly TLS-wrapped) socket

    def request(self, *args, **kwargs):
        # Called for new and reused connections alike.
        exchange = _current_exchange()
        if exchange is not None:
            exchange.watch(self)
        return super().request(*args, **kwargs)


class _VettedHTTPConnection(_VettedConnectionMixin, http.client.HTTPConnection):
    pass


class _VettedHTTPSConnection(_VettedConnectionMixin, http.client.HTTPSConnection):
    pass


def _is_dropped(sock):
    """True if an idle kept-alive socket was closed by the peer (or has stray bytes)."""
    # poll, not select: select() cannot watch a descriptor above 1023.
    poller = select.poll()
    try:
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True


class _ConnectionPool:
    """Idle kept-alive connections by (scheme, host, port), shared by threads.

    A connection is taken out for one exchange and put back only once its
    reply was read to the end; one that the receiver closed while idle is
    thrown away on the way out (a receiver's keep-alive timeout closes
    sockets behind our back).
    """

    def __init__(self, resolver, maxsize=32):
        self._resolver = resolver
        self._maxsize = maxsize
        self._idle = {}
        self._lock = threading.Lock()
        # One TLS context for every connection: loading the CA bundle costs
        # milliseconds, and the context keeps TLS sessions for resumption.
        self._tls = ssl.create_default_context(cafile=certifi.where())
        self._tls.minimum_version = ssl.TLSVersion.TLSv1_2
        self._tls.set_alpn_protocols(["http/1.1"])

    def take(self, parts, timeout):
        """Return an idle connection to the receiver of ``parts`` (a split URL), or a new one."""
        port = parts.port or _default_port(parts.scheme)
        key = (parts.scheme, parts.hostname, port)
        while True:
            with self._lock:
                idle = self._idle.get(key)
                conn = idle.pop() if idle else None
            if conn is None:
                break
            if conn.sock is not None and not _is_dropped(conn.sock):
                return conn
            conn.close()
        if parts.scheme == "https":
            conn = _VettedHTTPSConnection(
                parts.hostname, port, self._resolver, timeout=timeout, context=self._tls
            )
        else:
            conn = _VettedHTTPConnection(parts.hostname, port, self._resolver, timeout=timeout)
        conn.pool_key = key
        return conn

    def give_back(self, conn):
        """Keep ``conn`` for the next exchange (it must be idle and open)."""
        with self._lock:
            idle = self._idle.setdefault(conn.pool_key, [])
            if len(idle) < self._maxsize:
                idle.append(conn)
                return
        conn.close()

    def clear(self):
        """Close every idle connection."""
        with self._lock:
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()


# -- reading and describing the reply ----------------------------------------


def parse_retry_after(value, now=None):
    """Return a Retry-After header value as seconds from now, or None.

    Accepts delta-seconds (``"7"``) and an HTTP-date; a date in the past
    gives 0.0.  Anything else gives None.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    return max(0.0, (when - now).total_seconds())


def _read_capped(response, limit=BODY_LIMIT):
    """Read at most ``limit`` + 1 bytes; return (body, whole body was read).

    The extra byte tells a body of exactly ``limit`` bytes from a longer one.
    Nothing is decompressed (we ask for ``identity``): bounded work whatever
    the receiver sends.
    """
    body = b""
    while len(body) <= limit:
        chunk = response.read(limit + 1 - len(body))
        if not chunk:
            return body, True
        body += chunk
    return body[:limit], False


def _header_dict(message):
    """The reply's headers as a dict; a repeated header's values joined by ", "."""
    headers, names = {}, {}
    for name, value in message.items():
        name = names.setdefault(name.lower(), name)
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


def _describe_status(status, headers):
    """Return (error_kind, error_message) for a non-2xx status."""
    if 300 <= status < 400:
        location = headers.get("Location")
        where = f"to {location}" if location else "without a Location"
        return "redirect", f"Redirect not followed ({status} {where})"
    return "http_status", f"HTTP {status} from receiver"


def _result_from_reply(response, body, duration_ms):
    status = response.status
    headers = _header_dict(response.msg)
    result = SendResult(
        ok=200 <= status < 300,
        status_code=status,
        duration_ms=duration_ms,
        response_headers=headers,
        response_body=body[:BODY_LIMIT].decode("utf-8", errors="replace"),
    )
    if not result.ok:
        result.error_kind, result.error_message = _describe_status(status, response.msg)
        result.retry_after = parse_retry_after(response.msg.get("Retry-After"))
    return result


# -- classifying failures ----------------------------------------------------

_TLS_ERRORS = (ssl.SSLError, ssl.CertificateError)
# Everything post() turns into a SendResult instead of raising.
_DELIVERY_ERRORS = (http.client.HTTPException, OSError, netguard.AddressNotAllowed)
_DNS_NOT_FOUND = {socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)}


def _causes(exc):
    """Yield ``exc`` and every exception it wraps, however it wraps them."""
    seen, stack = set(), [exc]
    while stack:
        current = stack.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack += [current.__cause__, current.__context__, getattr(current, "reason", None)]
        stack += list(current.args)


def _first(causes, kinds):
    return next((c for c in causes if isinstance(c, kinds)), None)


def _timed_out(causes):
    return any(isinstance(c, TimeoutError) for c in causes)  # socket.timeout too


def _request_target(parts):
    """The path and query of ``parts`` (a split URL) to put in the request line.

    Characters a request line cannot carry (spaces, non-ASCII, control
    characters) are percent-encoded; existing %XX escapes are kept.  The
    fragment is never sent.
    """
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return quote(target, safe="!#$%&'()*+,/:;=?@[]~")


def _default_port(scheme):
    """The port an http(s) URL without one means."""
    return 443 if scheme == "https" else 80


def _http_url_parts(url):
    """``url`` split, if it is an absolute http(s) URL with a host and a valid port; else None.

    Checked before sending: ``example.com/hook`` must not be taken for an
    http URL, and a malformed one must be described, not raised.  A host
    name with an empty label or one over 63 characters is malformed too:
    resolving it raised UnicodeError from the IDNA codec.
    """
    try:
        parts = urlsplit(url)
        parts.port  # ValueError when out of range or not a number
        if parts.hostname:
            parts.hostname.encode("idna")  # UnicodeError is a ValueError
    except ValueError:
        return None
    return parts if parts.scheme in ("http", "https") and parts.hostname else None


def _authority(url):
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    port = port or _default_port(parts.scheme)
    return parts.hostname or "?", f"{host}:{port}"


def _dns_message(host, error):
    if error is not None and error.errno in _DNS_NOT_FOUND:
        return f"DNS name not found: {host}"
    reason = error.strerror if error is not None else "lookup failed"
    return f"DNS lookup failed for {host}: {reason}"


def _tls_message(error):
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"TLS certificate problem: {error.verify_message or error}"
    reason = getattr(error, "reason", None)
    return f"TLS handshake failed: {reason if isinstance(reason, str) else error}"


def _connection_message(causes):
    if _first(causes, ConnectionResetError):
        return "Connection reset by receiver"
    if _first(causes, http.client.RemoteDisconnected):
        return "Receiver closed the connection without answering"
    if _first(causes, http.client.IncompleteRead):
        return "Connection broken while reading the reply"
    return f"Connection failed: {causes[-1]}"


def classify_error(exc, url, deadline, deadline_fired=False):
    """Return (error_kind, error_message) for an exception raised sending to ``url``."""
    causes = list(_causes(exc))
    host, authority = _authority(url)
    if deadline_fired or _timed_out(causes):
        return "timeout", f"Timed out after {deadline:g} s"
    refused = _first(causes, netguard.AddressNotAllowed)
    if refused:
        return "address_not_allowed", f"Address not allowed: {refused}"
    if _first(causes, socket.gaierror):
        return "dns", _dns_message(host, _first(causes, socket.gaierror))
    tls = _first(causes, _TLS_ERRORS)
    if tls:
        return "tls", _tls_message(tls)
    if _first(causes, ConnectionRefusedError):
        return "refused", f"Connection refused by {authority}"
    if _first(causes, http.client.InvalidURL):
        return "connection", f"Invalid URL: {url}"
    return "connection", _connection_message(causes)


@dataclass
class _Flight:
    """A request on its way: its deadline, its connection, and any error sending it."""

    url: str
    exchange: _Exchange
    started_at: float  # time.time(), for the log
    perf_started: float  # time.perf_counter(), for the duration
    conn: object = None
    error: BaseException | None = None


# -- the sender ----------------------------------------------------------------


class Sender:
    """Deliver webhook POSTs safely; one instance per process, reused.

    ``allowed_networks`` (networks from :func:`netguard.parse_networks`, or
    the comma-separated text itself) are reachable even though private; with ``block_private=False`` the SSRF guard is off
    (development only).  ``deadline`` bounds each whole exchange in seconds.
    """

    def __init__(
        self,
        allowed_networks=None,
        block_private=True,
        deadline=10.0,
        user_agent="Hookline/0.1",
    ):
        if isinstance(allowed_networks, str):
            allowed_networks = netguard.parse_networks(allowed_networks)
        self.allowed_networks = list(allowed_networks or ())
        self.block_private = block_private
        self.deadline = float(deadline)
        self.user_agent = user_agent
        if block_private:
            resolver = functools.partial(
                netguard.resolve_checked, allowed=self.allowed_networks
            )
        else:
            resolver = _resolve_unchecked
        self._pool = _ConnectionPool(resolver)

    def close(self):
        """Close pooled connections."""
        self._pool.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def post(self, url, body, signature_headers, custom_headers=()):
        """POST ``body`` to ``url`` and return a :class:`SendResult`.

        ``signature_headers`` are the ``webhook-*`` headers (see
        :func:`tasks.signing.signature_headers`); ``custom_headers`` (dict or
        pairs) are the endpoint's own, filtered by :func:`build_headers`.
        Network trouble never raises: it is described in the result.
        """
        flight = self._begin(url, body, signature_headers, custom_headers)
        return flight if isinstance(flight, SendResult) else self._end(flight)

    def post_many(self, requests, window=8):
        """POST each ``(url, body, signature_headers, custom_headers)``; return the results in order.

        Up to ``window`` requests are in flight at once, each on its own
        kept-alive connection, all from the calling thread: every request
        is written, then each answer is read as it arrives (``poll``), and
        the next request goes out on the connection just freed. The receiver
        works on one answer while we read another, with neither threads nor
        their GIL hand-offs (a bare http.client loop on loopback: 100 us per
        POST one by one, 44 us eight at a time, and less CPU per POST too,
        since one wake-up serves several answers). Each request keeps its own
        deadline, so a hanging receiver costs a batch one deadline per
        ``window`` requests, not one per request.

        A receiver that drips one answer holds up the reading of the others
        until that answer's deadline; an answer whose own deadline passed
        meanwhile is reported as timed out and sent again later, with the
        same webhook-id, as after any timeout.
        """
        results = [None] * len(requests)
        waiting = collections.deque(enumerate(requests))
        in_flight = {}  # socket descriptor -> (index, _Flight)
        poller = select.poll()
        while waiting or in_flight:
            while waiting and len(in_flight) < window:
                index, request = waiting.popleft()
                flight = self._begin(*request)
                if isinstance(flight, SendResult):  # an invalid URL
                    results[index] = flight
                elif flight.error is not None:  # could not even send it
                    results[index] = self._end(flight)
                else:
                    descriptor = flight.conn.sock.fileno()
                    in_flight[descriptor] = (index, flight)
                    poller.register(descriptor, select.POLLIN)
            if not in_flight:
                continue
            # The watchdog cuts an exchange at its deadline, which makes its
            # socket readable; the timeout is only a net under that.
            earliest = min(flight.exchange.remaining() for _, flight in in_flight.values())
            ready = [descriptor for descriptor, _ in poller.poll(max(0.0, earliest) * 1000 + 100)]
            if not ready:
                ready = [d for d, (_, flight) in in_flight.items() if flight.exchange.remaining() <= 0]
            for descriptor in ready:
                # Unregister before _end() may close it: the number can be reused at once.
                poller.unregister(descriptor)
                index, flight = in_flight.pop(descriptor)
                results[index] = self._end(flight)
        return results

    def _begin(self, url, body, signature_headers, custom_headers):
        """Send a request and return its :class:`_Flight`; an invalid URL gives a SendResult instead."""
        if isinstance(body, str):
            body = body.encode("utf-8")
        parts = _http_url_parts(url)
        if parts is None:
            return SendResult(ok=False, error_kind="connection", error_message=f"Invalid URL: {url}",
                              started_at=time.time())
        headers = build_headers(self.user_agent, signature_headers, custom_headers)
        flight = _Flight(url, _Exchange(self.deadline).start(), time.time(), time.perf_counter())
        _local.exchange = flight.exchange  # the connection classes read the deadline here
        try:
            flight.conn = self._pool.take(parts, self.deadline)
            # One attempt per delivery (the outbox retries, on its own
            # schedule); a 3xx is the receiver's answer, never followed.
            flight.conn.request("POST", _request_target(parts), body, headers)
        except _DELIVERY_ERRORS as exc:
            flight.error = exc
        except BaseException:
            flight.exchange.finish()  # not ours to describe: stand the watchdog down, hang up
            if flight.conn is not None:
                flight.conn.close()
            raise
        finally:
            _local.exchange = None
        return flight

    def _end(self, flight):
        """Read the answer to a request sent by :meth:`_begin` and describe it."""
        response, complete, error = None, False, flight.error
        try:
            if error is None:
                response = flight.conn.getresponse()
                data, complete = _read_capped(response)
        except _DELIVERY_ERRORS as exc:
            error = exc
        finally:
            fired = flight.exchange.finish()
            duration_ms = (time.perf_counter() - flight.perf_started) * 1000
            self._release(flight.conn, response, complete and not fired)
        if error is None and not fired:
            result = _result_from_reply(response, data, duration_ms)
        else:
            result = self._failure(flight.url, error, fired, response, duration_ms)
        result.started_at = flight.started_at
        return result

    def _release(self, conn, response, reusable):
        # A fully read reply leaves the connection reusable (keep-alive),
        # unless the receiver said it would close it (http.client then drops
        # conn.sock). With bytes still unread, or after the deadline cut it,
        # close it rather than drain a possibly huge body.
        if conn is None:
            return
        if reusable and conn.sock is not None:
            self._pool.give_back(conn)
            return
        if response is not None:
            response.close()  # it may hold the socket after "Connection: close"
        conn.close()

    def _failure(self, url, error, fired, response, duration_ms):
        kind, message = classify_error(error, url, self.deadline, deadline_fired=fired)
        result = SendResult(
            ok=False,
            duration_ms=duration_ms,
            error_kind=kind,
            error_message=message,
        )
        if response is not None:
            # The status line and headers arrived before the trouble.
            result.status_code = response.status
            result.response_headers = _header_dict(response.msg)
        return result
