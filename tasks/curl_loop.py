"""One thread's libcurl machinery for the sender (tasks/sender.py).

libcurl handles are not thread-safe, so every thread that sends owns a
:class:`Loop`: a multi handle (its connection cache, kept for the life of
the process), a share (DNS and TLS sessions, so resumption works) and the
idle easy handles, each with a :class:`Transfer` its callbacks fill in.
The loop waits with ``poll`` (no descriptor-number limit, unlike select).
"""

import atexit
import threading
import ipaddress
import os
import select
import socket
import tempfile
import time

import certifi
import pycurl

#: How much of a receiver's reply is kept (and read).
BODY_LIMIT = 4096

#: How long a name's checked addresses are reused before netguard is asked again.
ADDRESS_TTL = 60.0
_POLL = {pycurl.POLL_IN: select.POLLIN, pycurl.POLL_OUT: select.POLLOUT,
         pycurl.POLL_INOUT: select.POLLIN | select.POLLOUT}
orphans = []  # a forked child's inherited loops: closing them would hang up the parent's sockets
_ca_files = {}


def ca_file(extra):
    """certifi's bundle, or a private copy of it with ``extra`` appended (CAINFO takes one file)."""
    if not extra:
        return certifi.where()
    if extra not in _ca_files:
        with open(certifi.where(), "rb") as ours, open(extra, "rb") as theirs:
            data = ours.read() + b"\n" + theirs.read()
        descriptor, path = tempfile.mkstemp(prefix="hookline-ca-", suffix=".pem")
        with os.fdopen(descriptor, "wb") as out:
            out.write(data)
        atexit.register(_remove_if_ours, path, os.getpid())
        _ca_files[extra] = path
    return _ca_files[extra]


def _remove_if_ours(path, pid):
    if os.getpid() == pid:  # a forked child's exit must not pull the file from under its parent
        os.unlink(path)


#: Header lines seen -> the headers they make (shared by a process's threads; emptied when full).
_parsed = {}
_PARSED_ENTRIES = 256


def _parse_headers(lines):
    """Raw header lines (status lines included) -> the last answer's headers, see Transfer.reply_headers."""
    start = 0
    for i, line in enumerate(lines):
        if line.startswith(b"HTTP/"):
            start = i + 1  # a new status line: a 1xx answer's headers are not the reply's
    headers, names = {}, {}
    for line in lines[start:]:
        if b":" not in line:
            continue
        name, _, value = line.decode("latin-1").partition(":")
        name, value = name.strip(), value.strip()
        name = names.setdefault(name.lower(), name)
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


class Transfer:
    """One easy handle's request state, filled in by libcurl's callbacks."""

    def __init__(self):
        #: Every header line libcurl passed, raw: HEADERFUNCTION is this list's append (no Python
        #: frame per line); reply_headers parses them once, when the transfer is over.
        self.lines = []
        #: (the sender's plan, RESOLVE list) the handle's URL and RESOLVE options were last set for.
        self.target = None

    def reset(self, index, url, host, allowed):
        self.index, self.url, self.host, self.allowed = index, url, host, allowed
        self.vetoed, self.cut = None, False
        self.body = bytearray()
        self.lines.clear()
        self.started, self.perf = time.time(), time.perf_counter()

    def write(self, data):
        room = BODY_LIMIT - len(self.body)
        if len(data) > room:
            self.body += data[:room]
            self.cut = True
            return 0  # libcurl stops with a write error and closes the connection
        self.body += data
        return None

    def reply_headers(self):
        """The final answer's headers; a repeated one's values joined by ", " under its first spelling.

        A receiver answers with the same header lines time after time: they
        are parsed once and the parse is kept, keyed by the lines themselves.
        """
        key = tuple(self.lines)
        headers = _parsed.get(key)
        if headers is None:
            if len(_parsed) >= _PARSED_ENTRIES:
                _parsed.clear()
            headers = _parsed[key] = _parse_headers(key)
        return dict(headers)

    def open_socket(self, purpose, address):
        # The connect-time half of the pinning: only the addresses netguard checked.
        ip = address.addr[0]
        if ipaddress.ip_address(ip.split("%", 1)[0]) not in self.allowed:
            self.vetoed = ip
            return pycurl.SOCKET_BAD
        return socket.socket(address.family, address.socktype, address.protocol)


class Loop:
    """A thread's multi handle (its connection cache), share (DNS, TLS sessions) and idle easy handles."""

    def __init__(self):
        self.pid = os.getpid()
        self.share = pycurl.CurlShare()
        self.share.setopt(pycurl.SH_SHARE, pycurl.LOCK_DATA_DNS)
        self.share.setopt(pycurl.SH_SHARE, pycurl.LOCK_DATA_SSL_SESSION)
        self.multi = pycurl.CurlMulti()
        self.multi.setopt(pycurl.M_MAXCONNECTS, 64)
        self.multi.setopt(pycurl.M_SOCKETFUNCTION, self._on_socket)
        self.multi.setopt(pycurl.M_TIMERFUNCTION, self._on_timer)
        self.poller, self.due, self.idle, self.addresses = select.poll(), None, [], {}

    def _on_socket(self, what, descriptor, multi, data):
        if what == pycurl.POLL_REMOVE:
            try:
                self.poller.unregister(descriptor)
            except KeyError:
                pass
        else:
            self.poller.register(descriptor, _POLL.get(what, 0))

    def _on_timer(self, milliseconds):
        self.due = None if milliseconds < 0 else time.monotonic() + milliseconds / 1000

    def step(self):
        """Wait (poll, any descriptor number) until libcurl has work, and let it do it."""
        wait = 1.0 if self.due is None else min(1.0, max(0.0, self.due - time.monotonic()))
        for descriptor, event in self.poller.poll(wait * 1000):
            flags = (pycurl.CSELECT_IN if event & (select.POLLIN | select.POLLHUP | select.POLLERR) else 0)
            flags |= pycurl.CSELECT_OUT if event & select.POLLOUT else 0
            self.multi.socket_action(descriptor, flags | (pycurl.CSELECT_ERR if event & select.POLLERR else 0))
        if self.due is not None and time.monotonic() >= self.due:
            self.due = None
            self.multi.socket_action(pycurl.SOCKET_TIMEOUT, 0)

    def handle(self, cainfo, deadline):
        """An idle (easy handle, its Transfer), or a new pair set up for webhook POSTs.

        The Transfer travels beside its handle, not as an attribute of it:
        pycurl looks an attribute up as a method first, and raising and
        clearing that AttributeError cost more than the rest of the lookup.
        """
        if self.idle:
            return self.idle.pop()
        handle, transfer = pycurl.Curl(), Transfer()
        for option, value in (
            (pycurl.SHARE, self.share), (pycurl.NOSIGNAL, 1),
            (pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS),
            (pycurl.FOLLOWLOCATION, 0), (pycurl.PROXY, ""),  # "" beats any *_proxy variable
            (pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_1_1),
            (pycurl.SSLVERSION, pycurl.SSLVERSION_TLSv1_2), (pycurl.CAINFO, cainfo),
            (pycurl.TIMEOUT_MS, int(deadline * 1000)),  # the whole exchange, from its start
            (pycurl.WRITEFUNCTION, transfer.write), (pycurl.HEADERFUNCTION, transfer.lines.append),
            (pycurl.OPENSOCKETFUNCTION, transfer.open_socket),
        ):
            handle.setopt(option, value)
        return handle, transfer

    def look_up(self, keys, resolve, deadline):
        """``resolve(key)`` for each (host, port), or the exception it raised; side by side.

        getaddrinfo cannot be interrupted, so each lookup runs in a helper
        thread, given up after ``deadline`` seconds; answers are kept
        ADDRESS_TTL seconds (libcurl's own DNS cache keeps names 60 s too).
        """
        now, outcome, answers = time.monotonic(), {}, {}
        for key in keys:
            expires, addresses = self.addresses.get(key, (0.0, None))
            if expires > now:
                outcome[key] = addresses
        missing = [key for key in keys if key not in outcome]

        def work(key):
            try:
                answers[key] = resolve(key)
            except Exception as exc:  # described to the user by the sender
                answers[key] = exc

        threads = [threading.Thread(target=work, args=(key,), name="hookline-dns", daemon=True)
                   for key in missing]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(max(0.0, now + deadline - time.monotonic()))
        for key in missing:
            outcome[key] = answers.get(key) or TimeoutError()
            if isinstance(outcome[key], list):
                self.addresses[key] = (now + ADDRESS_TTL, outcome[key])
        return outcome

    def finished(self):
        """Every transfer that ended since the last call, as (handle, code, libcurl's words)."""
        done = []
        while True:
            queued, ok, failed = self.multi.info_read()
            done += [(handle, 0, "") for handle in ok] + failed
            if not queued:
                return done

    def close(self):
        for handle, _ in self.idle:
            handle.close()
        self.multi.close()
        self.share.close()


def header(headers, wanted):
    """The value of header ``wanted`` (lower-case) in ``headers``, whatever its spelling; or None."""
    return next((value for name, value in headers.items() if name.lower() == wanted), None)
