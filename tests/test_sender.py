"""Tests for tasks.sender (the delivery HTTP client) and tasks.netguard.

Every receiver is real: a threaded http.server, or a raw socket server for
misbehaviour http.server cannot produce (dripping bytes, endless bodies, TLS
that fails verification), all on 127.0.0.1.  No mocks.
"""

import socket
import ssl
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from standardwebhooks import Webhook

from tasks.netguard import (
    AddressNotAllowed,
    check_url_host,
    is_allowed,
    parse_networks,
    resolve_checked,
)
from tasks.sender import Sender, build_headers, parse_retry_after
from tasks.signing import generate_secret, signature_headers

BODY = b'{"event_type":"call_initiated","payload":{"call_id":"c-1"}}'
LOOPBACK = "127.0.0.0/8"


# -- receivers ---------------------------------------------------------------


@dataclass
class Seen:
    path: str
    headers: list
    body: bytes
    client_port: int

    def header(self, name):
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return values[0] if len(values) == 1 else values or None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    disable_nagle_algorithm = True  # headers and body go in two writes

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        seen = Seen(self.path, list(self.headers.items()), body, self.client_address[1])
        self.server.seen.append(seen)
        time.sleep(self.server.delays.get(self.path, 0))
        status, headers, reply = self.server.routes.get(self.path, (200, {}, b"thanks"))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


class Receiver(ThreadingHTTPServer):
    """A well-behaved webhook receiver recording what it got."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen = []
        self.routes = {}
        self.delays = {}  # path -> seconds to wait before answering
        self.connections = 0

    def process_request(self, request, client_address):
        self.connections += 1
        super().process_request(request, client_address)

    @property
    def port(self):
        return self.server_address[1]

    def handle_error(self, request, client_address):
        # A sender that gave up at its deadline hangs up before the answer: normal here.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def url(self, path="/hook", host="127.0.0.1"):
        return f"http://{host}:{self.port}{path}"


def _read_request(conn):
    """Read one HTTP request (headers plus Content-Length body) from conn."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        body += conn.recv(65536)
    return data


class RawServer:
    """Accepts connections and runs ``script(conn, server)`` on each one."""

    def __init__(self, script, wrap=None):
        self.script = script
        self.wrap = wrap
        self.stop = threading.Event()
        self.connections = 0
        self.sent = 0
        self.finished = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def port(self):
        return self.listener.getsockname()[1]

    def _serve(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            self.connections += 1
            try:
                conn.settimeout(10)
                if self.wrap:
                    conn = self.wrap(conn)
                self.script(conn, self)
            except (OSError, ssl.SSLError):
                pass  # the client hung up on us: that is the point
            finally:
                conn.close()
                self.finished.set()

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.listener.close()


@pytest.fixture
def receiver():
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def raw_servers():
    servers = []
    yield lambda script, wrap=None: servers.append(RawServer(script, wrap)) or servers[-1]
    for server in servers:
        server.close()


@pytest.fixture
def sender():
    """A guarded sender that may reach the loopback test receivers."""
    with Sender(allowed_networks=parse_networks(LOOPBACK)) as s:
        yield s


def _signed(body=BODY, secret=None):
    secret = secret or generate_secret()
    return secret, signature_headers([secret], "msg_1", int(time.time()), body)


def _closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- success and headers -----------------------------------------------------


def test_success_delivers_exact_body_and_signed_headers(receiver, sender):
    secret, sig = _signed()
    result = sender.post(receiver.url(), BODY, sig)

    assert result.ok and result.status_code == 200 and result.error_kind is None
    assert result.response_body == "thanks"
    assert result.duration_ms > 0
    (seen,) = receiver.seen
    assert seen.body == BODY
    assert seen.header("Content-Type") == "application/json"
    assert seen.header("User-Agent") == "Hookline/0.1"
    assert seen.header("Content-Length") == str(len(BODY))
    assert seen.header("Host") == f"127.0.0.1:{receiver.port}"
    assert seen.header("webhook-id") == "msg_1"
    Webhook(secret).verify(seen.body, dict(seen.headers))


def test_custom_headers_arrive_but_cannot_replace_reserved_ones(receiver, sender):
    _, sig = _signed()
    custom = [
        ("X-Tenant", "acme"),
        ("Authorization", "Bearer t0ken"),
        ("content-type", "text/plain"),
        ("User-Agent", "evil/1.0"),
        ("Host", "evil.example"),
        ("Webhook-Signature", "v1,forged"),
        ("webhook-id", "forged"),
        ("Transfer-Encoding", "chunked"),
    ]
    result = sender.post(receiver.url(), BODY, sig, custom)

    assert result.ok
    (seen,) = receiver.seen
    assert seen.header("X-Tenant") == "acme"
    assert seen.header("Authorization") == "Bearer t0ken"
    assert seen.header("Content-Type") == "application/json"
    assert seen.header("User-Agent") == "Hookline/0.1"
    assert seen.header("Host") == f"127.0.0.1:{receiver.port}"
    assert seen.header("webhook-id") == "msg_1"
    assert seen.header("webhook-signature") == sig["webhook-signature"]
    assert seen.header("Transfer-Encoding") is None
    assert seen.body == BODY


def test_crlf_or_nul_in_custom_header_is_not_sent(receiver, sender):
    _, sig = _signed()
    custom = {
        "X-Split": "a\r\nInjected: 1",
        "X-Nul": "a\x00b",
        "X-Bad\r\nInjected-Too": "1",
        "X-Fine": "yes",
    }
    result = sender.post(receiver.url(), BODY, sig, custom)

    assert result.ok
    names = {name.lower() for name, _ in receiver.seen[0].headers}
    assert "x-fine" in names
    assert not names & {"x-split", "x-nul", "injected", "injected-too", "x-bad"}


def test_each_request_carries_its_own_signature_and_the_custom_headers_of_its_call(receiver, sender):
    # One sender keeps an integration's checked header lines between
    # requests: a new signature, or headers saved since, must still reach the wire.
    first, second = _signed(), _signed()
    sender.post_many([(receiver.url(), BODY, first[1], [("X-Tenant", "acme")]),
                      (receiver.url(), BODY, second[1], [("X-Tenant", "acme")])])
    sender.post(receiver.url(), BODY, second[1], [("X-Tenant", "globex"), ("X-Region", "eu")])

    seen = receiver.seen
    assert [s.header("X-Tenant") for s in seen] == ["acme", "acme", "globex"]
    assert [s.header("X-Region") for s in seen] == [None, None, "eu"]
    assert {s.header("webhook-signature") for s in seen[:2]} == {
        first[1]["webhook-signature"], second[1]["webhook-signature"]}
    names = [name.lower() for name, _ in seen[2].headers]
    order = [names.index(n) for n in ("content-type", "user-agent", "webhook-id", "webhook-timestamp",
                                      "webhook-signature", "x-tenant", "x-region")]
    assert order == sorted(order)
    for one in seen:
        Webhook(first[0] if one.header("webhook-signature") == first[1]["webhook-signature"]
                else second[0]).verify(one.body, dict(one.headers))


def test_build_headers_puts_reserved_headers_first():
    headers = build_headers(
        "Hookline/0.1",
        {"webhook-id": "m", "webhook-timestamp": "1", "webhook-signature": "v1,x"},
        {"X-A": "1", "connection": "close"},
    )
    assert list(headers) == [
        "Content-Type",
        "User-Agent",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "X-A",
    ]


# -- answers that are not 2xx ------------------------------------------------


def test_500_is_http_status_with_body(receiver, sender):
    receiver.routes["/hook"] = (500, {}, b"boom: database down")
    result = sender.post(receiver.url(), BODY, _signed()[1])

    assert not result.ok
    assert result.status_code == 500
    assert result.error_kind == "http_status"
    assert result.error_message == "HTTP 500 from receiver"
    assert result.response_body == "boom: database down"
    assert result.retry_after is None


def test_retry_after_seconds(receiver, sender):
    receiver.routes["/hook"] = (503, {"Retry-After": "7"}, b"busy")
    result = sender.post(receiver.url(), BODY, _signed()[1])

    assert result.error_kind == "http_status"
    assert result.retry_after == 7.0
    assert result.response_headers["Retry-After"] == "7"


def test_retry_after_http_date(receiver, sender):
    when = datetime.now(timezone.utc) + timedelta(seconds=120)
    receiver.routes["/hook"] = (429, {"Retry-After": format_datetime(when, usegmt=True)}, b"")
    result = sender.post(receiver.url(), BODY, _signed()[1])

    assert result.status_code == 429
    assert 100 < result.retry_after <= 121


def test_parse_retry_after():
    now = datetime(2025, 10, 10, 12, 0, 0, tzinfo=timezone.utc)
    assert parse_retry_after("0") == 0.0
    assert parse_retry_after(" 120 ") == 120.0
    assert parse_retry_after("Fri, 10 Oct 2025 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Fri, 10 Oct 2025 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-5") is None
    assert parse_retry_after(None) is None


def test_redirect_is_not_followed(receiver, sender):
    second = receiver.url("/second")
    receiver.routes["/hook"] = (302, {"Location": second}, b"moved")
    result = sender.post(receiver.url(), BODY, _signed()[1])

    assert not result.ok
    assert result.status_code == 302
    assert result.error_kind == "redirect"
    assert result.error_message == f"Redirect not followed (302 to {second})"
    assert [seen.path for seen in receiver.seen] == ["/hook"]


# -- network failures --------------------------------------------------------


def test_closed_port_is_refused(sender):
    port = _closed_port()
    result = sender.post(f"http://127.0.0.1:{port}/", BODY, _signed()[1])

    assert not result.ok and result.status_code is None
    assert result.error_kind == "refused"
    assert result.error_message == f"Connection refused by 127.0.0.1:{port}"


def test_unresolvable_name_is_dns(sender):
    result = sender.post("http://nonexistent.invalid/", BODY, _signed()[1])

    assert result.error_kind == "dns"
    assert "nonexistent.invalid" in result.error_message


@pytest.mark.parametrize("url", [
    "not a url",
    "example.com/hook",  # no scheme: not taken for http
    "ftp://example.com/hook",
    "http://",
    "http://example.com:99999/hook",
    "http://[::1/hook",
    "http://hooks..example.com/",  # an empty label
    "http://" + "x" * 64 + ".example.com/",  # a label over 63 characters
])
def test_invalid_url_does_not_raise(sender, url):
    result = sender.post(url, BODY, _signed()[1])
    assert result.error_kind == "connection"
    assert result.error_message == f"Invalid URL: {url}"


def _answer_ok(conn):
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


def _drip_headers(conn, server):
    _read_request(conn)
    if server.connections > 1:
        return _answer_ok(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nX-Drip: ")
    while not server.stop.is_set():
        conn.sendall(b"a")
        time.sleep(0.5)


def _drip_body(conn, server):
    _read_request(conn)
    if server.connections > 1:
        return _answer_ok(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
    while not server.stop.is_set():
        conn.sendall(b"a")
        time.sleep(0.5)


@pytest.mark.parametrize("script", [_drip_headers, _drip_body], ids=["headers", "body"])
def test_dripping_receiver_is_cut_at_the_deadline(raw_servers, script):
    server = raw_servers(script)
    with Sender(allowed_networks=parse_networks(LOOPBACK), deadline=2.0) as sender:
        started = time.monotonic()
        result = sender.post(f"http://127.0.0.1:{server.port}/", BODY, _signed()[1])
        elapsed = time.monotonic() - started

        # The cut connection must not poison the pool.
        after = sender.post(f"http://127.0.0.1:{server.port}/", BODY, _signed()[1])

    assert not result.ok
    assert result.error_kind == "timeout"
    assert result.error_message == "Timed out after 2 s"
    assert elapsed < 2.0 + 1.5
    assert after.ok and after.response_body == "ok"


HUGE = 50 * 1024 * 1024


def _huge_body(status_line):
    def script(conn, server):
        _read_request(conn)
        conn.sendall(b"%s\r\nLocation: /x\r\nContent-Length: %d\r\n\r\n" % (status_line, HUGE))
        chunks = (b"x" * 65536 for _ in range(HUGE // 65536))
        for chunk in chunks:
            conn.sendall(chunk)
            server.sent += len(chunk)

    return script


@pytest.mark.parametrize(
    "status_line, ok, status",
    [(b"HTTP/1.1 200 OK", True, 200), (b"HTTP/1.1 302 Found", False, 302)],
    ids=["200", "302"],
)
def test_huge_body_is_not_read(raw_servers, sender, status_line, ok, status):
    server = raw_servers(_huge_body(status_line))
    result = sender.post(f"http://127.0.0.1:{server.port}/", BODY, _signed()[1])

    assert result.ok is ok and result.status_code == status
    assert result.response_body == "x" * 4096
    assert server.finished.wait(10)
    assert server.sent < HUGE  # we hung up long before the end


# -- the SSRF guard ----------------------------------------------------------


def test_loopback_is_refused_without_connecting(receiver):
    with Sender() as sender:
        result = sender.post(receiver.url(), BODY, _signed()[1])

    assert not result.ok
    assert result.error_kind == "address_not_allowed"
    assert result.error_message.startswith("Address not allowed: ")
    assert receiver.connections == 0 and receiver.seen == []


def test_allowed_network_opens_the_guard(receiver):
    with Sender(allowed_networks=parse_networks(LOOPBACK)) as sender:
        result = sender.post(receiver.url(), BODY, _signed()[1])

    assert result.ok and len(receiver.seen) == 1


@pytest.mark.parametrize(
    "host",
    ["localhost", "2130706433", "0x7f000001", "0177.0.0.1", "127.1", "[::ffff:127.0.0.1]"],
)
def test_loopback_in_disguise_is_refused(receiver, host):
    with Sender() as sender:
        result = sender.post(receiver.url(host=host), BODY, _signed()[1])

    assert result.error_kind == "address_not_allowed"
    assert receiver.connections == 0


# -- several requests in flight (post_many) ------------------------------------


def test_post_many_answers_in_order_and_a_slow_answer_holds_back_no_other(receiver, sender):
    receiver.delays["/slow"] = 0.5
    receiver.routes["/fail"] = (500, {}, b"nope")
    requests = [(receiver.url(path), BODY, _signed()[1], ()) for path in ("/slow", "/a", "/fail", "/b")]
    requests.insert(2, ("not a url", BODY, _signed()[1], ()))

    results = sender.post_many(requests, window=8)
    again = sender.post_many(requests[1:2] * 3, window=8)

    assert [r.status_code for r in results] == [200, 200, None, 500, 200]
    assert [r.response_body for r in results] == ["thanks", "thanks", "", "nope", "thanks"]
    assert results[2].error_message == "Invalid URL: not a url"
    assert results[3].error_message == "HTTP 500 from receiver"
    # Each answer was read as it came, not behind the slow one.
    assert results[0].duration_ms >= 500
    assert all(r.duration_ms < 400 for r in (results[1], results[3], results[4]))
    # Four requests in flight on four connections, kept alive for the next batch.
    assert receiver.connections == 4
    assert all(r.ok for r in again) and receiver.connections == 4


def test_post_many_to_a_hanging_receiver_costs_one_deadline_per_window(receiver):
    receiver.delays["/hang"] = 1.5
    with Sender(allowed_networks=parse_networks(LOOPBACK), deadline=0.5) as sender:
        started = time.monotonic()
        results = sender.post_many([(receiver.url("/hang"), BODY, _signed()[1], ())] * 6, window=3)
        elapsed = time.monotonic() - started

    assert [r.error_kind for r in results] == ["timeout"] * 6
    assert all(r.error_message == "Timed out after 0.5 s" for r in results)
    assert elapsed < 2.0  # two windows of 0.5 s; one by one it would be 3 s


def test_a_reused_handle_goes_where_each_request_says(receiver, sender):
    # One request at a time: every request after the first reuses the same
    # easy handle, whose URL is set again only when the request's differs.
    other = Receiver()
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        urls = [receiver.url("/a"), receiver.url("/a"), other.url("/b"), receiver.url("/c"), other.url("/b")]
        results = sender.post_many([(url, BODY, _signed()[1], ()) for url in urls], window=1)
        again = sender.post(receiver.url("/a"), BODY, _signed()[1])
    finally:
        other.shutdown()
        other.server_close()

    assert all(r.ok for r in results) and again.ok
    assert [seen.path for seen in receiver.seen] == ["/a", "/a", "/c", "/a"]
    assert [seen.path for seen in other.seen] == ["/b", "/b"]


def test_keep_alive_reuses_one_connection(receiver, sender):
    first = sender.post(receiver.url(), BODY, _signed()[1])
    second = sender.post(receiver.url(), BODY, _signed()[1])

    assert first.ok and second.ok
    assert receiver.connections == 1
    assert receiver.seen[0].client_port == receiver.seen[1].client_port


def _answer_then_hang_up(conn, server):
    # A keep-alive reply (no "Connection: close"), then the receiver's idle
    # timeout closes the socket behind the client's back.
    _read_request(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    time.sleep(0.2)


def test_connection_closed_while_idle_is_not_reused(raw_servers, sender):
    server = raw_servers(_answer_then_hang_up)
    url = f"http://127.0.0.1:{server.port}/"
    first = sender.post(url, BODY, _signed()[1])
    time.sleep(0.5)  # the receiver has hung up by now
    second = sender.post(url, BODY, _signed()[1])

    assert first.ok and second.ok, second.error_message
    assert server.connections == 2


def test_connection_close_reply_is_not_reused(receiver, sender):
    receiver.routes["/hook"] = (200, {"Connection": "close"}, b"bye")
    first = sender.post(receiver.url(), BODY, _signed()[1])
    second = sender.post(receiver.url(), BODY, _signed()[1])

    assert first.ok and second.ok and second.response_body == "bye"
    assert receiver.connections == 2


def test_path_and_query_are_sent_percent_encoded(receiver, sender):
    result = sender.post(receiver.url("/hooks/caf\u00e9 bar?token=a%2Fb&x=1#frag"), BODY, _signed()[1])

    assert result.ok
    assert receiver.seen[0].path == "/hooks/caf%C3%A9%20bar?token=a%2Fb&x=1"


def test_repeated_reply_headers_are_joined(raw_servers, sender):
    def script(conn, server):
        _read_request(conn)
        conn.sendall(b"HTTP/1.1 500 Oops\r\nX-Trace: a\r\nx-trace: b\r\n"
                     b"Content-Length: 0\r\n\r\n")

    server = raw_servers(script)
    result = sender.post(f"http://127.0.0.1:{server.port}/", BODY, _signed()[1])

    assert result.status_code == 500
    assert result.response_headers["X-Trace"] == "a, b"


def test_chunked_reply_is_read_and_the_connection_kept(raw_servers, sender):
    def script(conn, server):
        for _ in range(2):
            _read_request(conn)
            conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")

    server = raw_servers(script)
    url = f"http://127.0.0.1:{server.port}/"
    first = sender.post(url, BODY, _signed()[1])
    second = sender.post(url, BODY, _signed()[1])

    assert first.response_body == "abcde" and second.response_body == "abcde"
    assert server.connections == 1


# -- TLS -----------------------------------------------------------------------


@pytest.fixture
def self_signed(tmp_path):
    if not shutil.which("openssl"):
        pytest.skip("openssl not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


def test_tls_uses_hostname_for_sni_and_reports_bad_certificate(raw_servers, self_signed):
    names = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*self_signed)
    context.sni_callback = lambda sslsock, name, ctx: names.append(name)

    def wrap(conn):
        return context.wrap_socket(conn, server_side=True)

    server = raw_servers(lambda conn, server: _read_request(conn), wrap)
    with Sender(allowed_networks=parse_networks(LOOPBACK)) as sender:
        result = sender.post(f"https://localhost:{server.port}/", BODY, _signed()[1])

    assert result.error_kind == "tls"
    assert result.error_message.startswith("TLS certificate problem: ")
    assert server.finished.wait(5)
    assert names == ["localhost"]  # connected to the vetted IP, SNI kept the name


# -- netguard ------------------------------------------------------------------


def test_parse_networks():
    nets = parse_networks(" 10.0.0.0/8, ,192.168.1.7, fd00::/8 ")
    assert [str(n) for n in nets] == ["10.0.0.0/8", "192.168.1.7/32", "fd00::/8"]
    assert parse_networks("") == []
    with pytest.raises(ValueError, match="10.0.0.0/33"):
        parse_networks("127.0.0.0/8, 10.0.0.0/33")


@pytest.mark.parametrize(
    "ip, expected",
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("::ffff:8.8.8.8", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.5.4", False),
        ("192.168.0.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("255.255.255.255", False),
        ("198.51.100.7", False),
        ("::1", False),
        ("::", False),
        ("fd12::1", False),
        ("fe80::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("2002:7f00:1::1", False),  # 6to4 wrapping 127.0.0.1
        ("64:ff9b::a00:1", False),  # NAT64 of 10.0.0.1
        ("2001:db8::1", False),
    ],
)
def test_is_allowed_by_default(ip, expected):
    assert is_allowed(ip, []) is expected


def test_allowed_networks_override_blocks():
    allowed = parse_networks("10.0.0.0/8, 127.0.0.0/8")
    assert is_allowed("10.1.2.3", allowed)
    assert is_allowed("::ffff:127.0.0.1", allowed)
    assert not is_allowed("192.168.0.1", allowed)


@pytest.mark.parametrize("host", ["2130706433", "0x7f000001", "0177.0.0.1", "127.1"])
def test_resolve_checked_catches_odd_spellings(host):
    with pytest.raises(AddressNotAllowed, match="127.0.0.1, which is a loopback address"):
        resolve_checked(host, 80, [])


def test_resolve_checked_names_the_host():
    with pytest.raises(AddressNotAllowed, match=r"^localhost resolves to (127\.0\.0\.1|::1), "):
        resolve_checked("localhost", 80, [])
    infos = resolve_checked("localhost", 80, parse_networks("127.0.0.0/8, ::1"))
    assert infos and all(info[4][1] == 80 for info in infos)


def test_check_url_host():
    check_url_host("http://nonexistent.invalid/hook", [])  # unknown name: not an error
    check_url_host("https://8.8.8.8/hook", [])
    check_url_host("http://127.1:8080/", parse_networks(LOOPBACK))
    with pytest.raises(AddressNotAllowed):
        check_url_host("http://127.1:8080/", [])
    with pytest.raises(AddressNotAllowed):
        check_url_host("https://[::1]/", [])
