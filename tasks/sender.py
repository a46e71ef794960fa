"""The one HTTP client that delivers webhooks, on libcurl (pycurl).

Every delivery, from the RQ worker or from the Test button, goes through
:class:`Sender`.  It is written for URLs typed by strangers:

* it never raises for network trouble: :meth:`Sender.post` returns a
  :class:`SendResult` whose ``error_kind``/``error_message`` say what went
  wrong in words a person can act on (tasks/curl_errors.py);
* it connects only to addresses the SSRF guard (:mod:`tasks.netguard`)
  checked: the name is resolved once, the checked addresses are handed to
  libcurl (``CURLOPT_RESOLVE``) and any other address is refused when the
  socket is opened; an ``http_proxy`` in the environment is ignored.  The
  Host header, TLS SNI and certificate check still use the name;
* the whole exchange has one deadline (``CURLOPT_TIMEOUT_MS``), so a
  receiver that drips a byte per second cannot hold a worker for longer;
* it keeps at most 4096 bytes of the reply and hangs up on longer ones;
* :meth:`Sender.post_many` keeps several transfers in flight from the
  calling thread (``CurlMulti``): DNS, connects, TLS handshakes and answers
  all overlap, and each transfer's deadline starts when it gets a slot;
* connections and TLS sessions are kept between deliveries.  libcurl
  handles are not thread-safe, so each thread that sends gets its own multi
  handle (its connection cache) and share (DNS, TLS sessions), kept for the
  life of the process;
* every 1xx answer is skipped and a request whose kept-alive connection died
  under it is sent again once on a fresh connection: libcurl does both.

The module is pure: no Flask, no app code, plain arguments only.  Build one
``Sender`` per process and share it between threads.
"""

import ipaddress
import logging
import os
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import pycurl

# The custom headers' rules (reserved names, valid names and values) are the
# settings' own: one list for the form, the CLI and the sender.
from models.rules import RESERVED_HEADERS, is_reserved_header, is_sendable_header  # noqa: F401

from . import netguard
from .curl_loop import Loop, ca_file, header, orphans
from .request_headers import Framing, build_headers  # noqa: F401  (build_headers: part of this module's API)
from .curl_errors import (  # noqa: F401  (parse_retry_after: part of this module's API)
    describe_curl_error, describe_lookup_error, describe_status, describe_vetoed, host_port,
    http_url_parts, is_ip_literal, parse_retry_after, request_target,
)

log = logging.getLogger(__name__)

# The easy handle's methods, looked up once: pycurl's attribute lookup on a handle is slow.
_setopt, _getinfo = pycurl.Curl.setopt, pycurl.Curl.getinfo
_HTTPHEADER, _POSTFIELDS, _RESPONSE_CODE = pycurl.HTTPHEADER, pycurl.POSTFIELDS, pycurl.RESPONSE_CODE


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


# -- what every request to one URL shares -----------------------------------------


class _Plan:
    """What one URL needs of each request: its checked parts, (host, port) and libcurl's URL."""

    __slots__ = ("parts", "key", "curl_url", "is_ip")

    def __init__(self, url):
        self.parts = parts = http_url_parts(url)
        if parts is None:
            return
        self.key = host, port = host_port(parts)
        shown = f"[{host}]" if ":" in host else host
        self.curl_url = f"{parts.scheme}://{shown}:{port}{request_target(parts)}"
        self.is_ip = is_ip_literal(host)


#: Entries kept per cache: an integration has one URL and one set of headers.
_CACHE_ENTRIES = 64


def _cached(cache, key, build):
    """``cache[key]``, built with ``build()`` when missing; the cache is emptied when full.

    Shared by a process's threads: a lost race builds the same value twice.
    """
    try:
        return cache[key]
    except KeyError:
        pass
    except TypeError:  # an unhashable header value: build it for this request only
        return build()
    if len(cache) >= _CACHE_ENTRIES:
        cache.clear()
    value = cache[key] = build()
    return value


# -- the sender ----------------------------------------------------------------


class Sender:
    """Deliver webhook POSTs safely; one instance per process, shared by its threads.

    ``allowed_networks`` (networks from :func:`netguard.parse_networks`, or
    the comma-separated text itself) are reachable even though private; with
    ``block_private=False`` the SSRF guard is off (development only), though
    connections still go only to the addresses looked up.  ``deadline``
    bounds each whole exchange in seconds; ``ca_bundle`` is an extra PEM
    file of trusted CAs, added to certifi's.
    """

    def __init__(self, allowed_networks=None, block_private=True, deadline=10.0,
                 user_agent="Hookline/0.1", ca_bundle=None):
        if isinstance(allowed_networks, str):
            allowed_networks = netguard.parse_networks(allowed_networks)
        self.allowed_networks = list(allowed_networks or ())
        self.block_private = block_private
        self.deadline = float(deadline)
        self.user_agent = user_agent
        self.cainfo = ca_file(ca_bundle)
        self._local = threading.local()
        self._plans, self._framings, self._pins = {}, {}, {}

    def close(self):
        """Close the calling thread's connections (other threads' close when those threads end)."""
        loop = getattr(self._local, "loop", None)
        self._local.loop = None
        if loop is not None and loop.pid == os.getpid():
            loop.close()

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
        return self.post_many([(url, body, signature_headers, custom_headers)], window=1)[0]

    def post_many(self, requests, window=8):
        """POST each ``(url, body, signature_headers, custom_headers)``; return the results in order.

        Up to ``window`` transfers are in flight at once from the calling
        thread, each on its own connection (kept alive for the next call);
        one starts, with its own deadline, as soon as a slot is free, so a
        hanging receiver costs a batch one deadline per ``window`` requests.
        """
        loop = self._loop()
        # A batch's requests nearly all go to one URL: each URL is planned once per call.
        plans = {url: _cached(self._plans, url, lambda url=url: _Plan(url)) for url in {r[0] for r in requests}}
        looked_up = loop.look_up({plan.key for plan in plans.values() if plan.parts is not None},
                                   self._resolve, self.deadline)
        results, running = [None] * len(requests), {}  # running: easy handle -> its Transfer
        waiting = deque(enumerate(requests))
        memo = {}  # this call's pins and framings: a batch's requests share them
        add, remove, idle = loop.multi.add_handle, loop.multi.remove_handle, loop.idle
        try:
            while waiting or running:
                while waiting and len(running) < window:
                    index, request = waiting.popleft()
                    started = self._start(loop, index, plans[request[0]], looked_up, *request, memo=memo)
                    if isinstance(started, SendResult):
                        results[index] = started
                    else:
                        add(started[0])
                        running[started[0]] = started[1]
                if running:
                    loop.step()
                for handle, code, text in loop.finished():
                    remove(handle)
                    transfer = running.pop(handle)
                    results[transfer.index] = self._result(handle, transfer, code, text)
                    idle.append((handle, transfer))
        finally:
            for handle in running:  # only when interrupted (a job timeout): abandon them
                remove(handle)
                handle.close()
        return results

    def _loop(self):
        loop = getattr(self._local, "loop", None)
        if loop is None or loop.pid != os.getpid():
            if loop is not None:
                orphans.append(loop)
            loop = self._local.loop = Loop()
        return loop

    def _resolve(self, key):
        """The addresses ``key`` (host, port) may be reached at: netguard's checked answer."""
        host, port = key
        if self.block_private:
            infos = netguard.resolve_checked(host, port, self.allowed_networks)
        else:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        found = [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]
        return list(dict.fromkeys(found))  # getaddrinfo's order, for Happy Eyeballs

    def _start(self, loop, index, plan, looked_up, url, body, signature_headers, custom_headers=(), *, memo):
        """A ready easy handle for one request, or a SendResult when it cannot start.

        ``memo`` keeps, for one post_many call, each name's pins and each
        custom-headers object's framing (the call holds every request, so
        an object's id stays its own): a batch's requests share them.
        """
        if plan.parts is None:
            return SendResult(ok=False, error_kind="connection", error_message=f"Invalid URL: {url}",
                              started_at=time.time())
        key = plan.key
        addresses = looked_up[key]
        if isinstance(addresses, BaseException):
            kind, message = describe_lookup_error(addresses, url, self.deadline)
            return SendResult(ok=False, error_kind=kind, error_message=message, started_at=time.time())
        if (pinned := memo.get(key)) is None:
            pinned = memo[key] = _cached(self._pins, (key, tuple(addresses)), lambda: self._pinning(plan, addresses))
        allowed, resolve = pinned
        handle, transfer = loop.handle(self.cainfo, self.deadline)
        transfer.reset(index, url, key[0], allowed)
        # An easy handle keeps its options: a reused one already sending to this URL, pinned the same, keeps them.
        if transfer.target != (target := (plan, resolve)):
            _setopt(handle, pycurl.URL, plan.curl_url)
            _setopt(handle, pycurl.RESOLVE, resolve)
            transfer.target = target
        if (framing := memo.get(id(custom_headers))) is None:
            framing = memo[id(custom_headers)] = self._framing(custom_headers)
        _setopt(handle, _HTTPHEADER, framing.lines(signature_headers))
        # POSTFIELDS sets POSTFIELDSIZE to the bytes' length too (pycurl does), and keeps the bytes.
        _setopt(handle, _POSTFIELDS, body if type(body) is bytes else
                body.encode("utf-8") if isinstance(body, str) else bytes(body))
        return handle, transfer

    def _framing(self, custom_headers):
        """The kept Framing for this sender's User-Agent and ``custom_headers`` (dict or pairs)."""
        custom = tuple(custom_headers.items()) if hasattr(custom_headers, "items") else tuple(
            tuple(pair) for pair in custom_headers or ())
        return _cached(self._framings, (self.user_agent, custom), lambda: Framing(self.user_agent, custom_headers))

    @staticmethod
    def _pinning(plan, addresses):
        """(the addresses a socket may open to, libcurl's RESOLVE entry) for a looked-up name."""
        host, port = plan.key
        pins = ",".join(f"[{ip}]" if ip.version == 6 else str(ip) for ip in addresses)
        return frozenset(addresses), [] if plan.is_ip else [f"{host}:{port}:{pins}"]

    def _result(self, handle, transfer, code, text):
        url = transfer.url
        duration_ms = (time.perf_counter() - transfer.perf) * 1000
        status = _getinfo(handle, _RESPONSE_CODE) or None
        headers = transfer.reply_headers()
        result = SendResult(ok=False, status_code=status, duration_ms=duration_ms, response_headers=headers,
                            started_at=transfer.started)
        if code and not (code == pycurl.E_WRITE_ERROR and transfer.cut):
            if transfer.vetoed:
                result.error_kind, result.error_message = describe_vetoed(transfer.host, transfer.vetoed)
            else:
                result.error_kind, result.error_message = describe_curl_error(
                    code, text, _getinfo(handle, pycurl.OS_ERRNO), url, self.deadline)
            return result
        result.response_body = transfer.body.decode("utf-8", "replace")
        result.ok = 200 <= status < 300
        if not result.ok:
            result.error_kind, result.error_message = describe_status(status, headers)
            result.retry_after = parse_retry_after(header(headers, "retry-after"))
        return result
