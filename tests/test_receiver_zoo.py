"""The receiver zoo: the sender against receivers that behave like real ones.

Every receiver is a real socket server on 127.0.0.1 (and ::1 where the box
has it), TLS ones with a certificate from a CA made here and handed to the
sender as its extra CA bundle (HOOKLINE_CA_BUNDLE). Deadlines are shortened
so the zoo runs in seconds; where the issue names a figure (a TLS receiver
whose every handshake takes 1.5 s, a listener that never accepts, 103 then
200, a dropped kept-alive connection) the test checks that figure.
"""

import datetime
import ipaddress
import socket
import ssl
import threading
import time

import pytest
import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from rq import Worker
from sqlalchemy import select

from config import load_config
from events import example_envelope
from models import db
from models.events import Attempt, Delivery
from models.settings import get_settings
from tasks import publish_event
from tasks.netguard import parse_networks
from tasks.queue import flush_rings
from tasks.sender import Sender

BODY = b'{"event_type":"call_initiated","payload":{"call_id":"c-1"}}'
SIG = {"webhook-id": "msg_zoo", "webhook-timestamp": "1", "webhook-signature": "v1,x"}
LOOPBACK = parse_networks("127.0.0.0/8, ::1")


# -- a CA of our own -------------------------------------------------------------


def _name(text):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


def _pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    """(CA bundle, server cert, server key): a CA and a leaf for localhost, 127.0.0.1 and ::1."""
    folder = tmp_path_factory.mktemp("tls")
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("Zoo CA")).issuer_name(_name("Zoo CA"))
          .public_key(ca_key.public_key()).serial_number(1)
          .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
             x509.IPAddress(ipaddress.ip_address("::1"))]
    leaf = (x509.CertificateBuilder().subject_name(_name("localhost")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(2)
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    paths[0].write_bytes(_pem(ca))
    paths[1].write_bytes(_pem(leaf))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


def _server_context(tls_files, version=ssl.TLSVersion.TLSv1_3):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_files[1], tls_files[2])
    context.minimum_version = context.maximum_version = version
    return context


def test_an_unreadable_ca_bundle_is_refused_at_startup(tmp_path):
    with pytest.raises(RuntimeError, match="HOOKLINE_CA_BUNDLE must name a readable PEM file"):
        load_config(str(tmp_path), {"HOOKLINE_CA_BUNDLE": str(tmp_path / "missing.pem")})


def test_without_the_ca_bundle_our_ca_is_not_trusted(zoo, tls_files):
    server = zoo(tls=_server_context(tls_files))
    with Sender(allowed_networks=LOOPBACK, deadline=1.0) as plain:
        result = plain.post(server.url(), BODY, SIG)

    assert result.error_kind == "tls"
    assert result.error_message.startswith("TLS certificate problem: ")


def test_https_to_a_plain_http_receiver_says_so(zoo, sender):
    server = zoo(lambda conn, zoo: conn.recv(4096) and answer(conn, b"", b"400 Bad Request"))
    result = sender.post(f"https://127.0.0.1:{server.port}/hook", BODY, SIG)

    assert result.error_kind == "tls"
    assert result.error_message == "TLS handshake failed: wrong version number"


# -- receivers -------------------------------------------------------------------


def read_request(conn):
    """One request (head and Content-Length body) from ``conn``; b"" when the client hung up."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        body += conn.recv(65536)
    return head


def answer(conn, body=b"ok", status=b"200 OK"):
    conn.sendall(b"HTTP/1.1 %s\r\nContent-Length: %d\r\n\r\n%s" % (status, len(body), body))


def keep_answering(conn, zoo):
    """A well-behaved keep-alive receiver: answers each request on the connection; /slow after 1 s."""
    while head := read_request(conn):
        if b" /slow " in head.split(b"\r\n")[0]:
            time.sleep(1.0)
        zoo.answered.append((time.time(), head))
        answer(conn)


class Zoo:
    """A listener that runs ``script(conn, zoo)`` for each connection in a thread of its own.

    ``tls`` wraps each connection after ``stall`` seconds (a slow handshake);
    ``accept=False`` makes a listener that never accepts.
    """

    def __init__(self, script=keep_answering, tls=None, stall=0.0, accept=True, host="127.0.0.1"):
        self.script, self.tls, self.stall = script, tls, stall
        self.connections, self.answered, self.resumed, self.sent = 0, [], [], 0
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.listener = socket.create_server((host, 0), family=family, backlog=0 if not accept else 64)
        # Set here, not in _serve: a test that ends at once may close the
        # listener before that thread first runs.
        self.listener.settimeout(0.2)
        self.host, self.stop = host, threading.Event()
        if accept:
            threading.Thread(target=self._serve, daemon=True).start()

    @property
    def port(self):
        return self.listener.getsockname()[1]

    def url(self, path="/hook", host=None):
        host = host or (f"[{self.host}]" if ":" in self.host else self.host)
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}{path}"

    def _serve(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn):
        try:
            conn.settimeout(15)
            if self.tls:
                time.sleep(self.stall)
                conn = self.tls.wrap_socket(conn, server_side=True)
                self.resumed.append(conn.session_reused)
            self.script(conn, self)
        except (OSError, ssl.SSLError):
            pass  # the client hung up: part of the zoo
        finally:
            conn.close()

    def close(self):
        self.stop.set()
        self.listener.close()


@pytest.fixture
def zoo():
    made = []
    yield lambda *args, **kwargs: made.append(Zoo(*args, **kwargs)) or made[-1]
    for each in made:
        each.close()


@pytest.fixture
def sender(tls_files):
    with Sender(allowed_networks=LOOPBACK, deadline=1.0, ca_bundle=str(tls_files[0])) as s:
        yield s


# -- the sender alone ---------------------------------------------------------------


def test_a_never_accepting_listener_holds_back_no_fast_receiver(zoo, sender):
    stuck, fast = zoo(accept=False), zoo()
    requests = [(stuck.url(), BODY, SIG, ()), (fast.url(), BODY, SIG, ())] * 8
    started = time.monotonic()
    results = sender.post_many(requests, window=8)
    elapsed = time.monotonic() - started

    print(f"\nnever-accepting x8 + fast x8: call {elapsed:.2f} s (deadline 1 s), "
          f"fast ones {max(r.duration_ms for r in results[1::2]):.1f} ms at most")
    assert [r.error_kind for r in results[0::2]] == ["timeout"] * 8
    assert all(r.error_message == "Timed out after 1 s" for r in results[0::2])
    assert all(r.ok for r in results[1::2])
    # Their true durations (a few ms when the box is quiet; the bound leaves room for a busy
    # CI box): not the stuck ones' deadline.
    assert max(r.duration_ms for r in results[1::2]) < 250
    assert elapsed < 1.0 + 0.5  # the call is over at the deadline, not at 8 of them
    assert len(fast.answered) == 8


def test_tls_handshakes_overlap_and_the_connections_are_kept(zoo, sender, tls_files):
    slow = zoo(tls=_server_context(tls_files), stall=0.5)
    with Sender(allowed_networks=LOOPBACK, deadline=2.0, ca_bundle=str(tls_files[0])) as two_seconds:
        started = time.monotonic()
        first = two_seconds.post_many([(slow.url(), BODY, SIG, ())] * 8, window=8)
        first_took = time.monotonic() - started
        again = two_seconds.post_many([(slow.url(), BODY, SIG, ())] * 8, window=8)

    assert all(r.ok for r in first + again), [r.error_message for r in first + again]
    assert first_took < 1.0  # eight 0.5 s handshakes side by side, not 4 s one after another
    assert slow.connections == 8  # the second batch went over the same eight connections
    assert max(r.duration_ms for r in again) < 200


def test_tls_sessions_are_resumed_on_new_connections(zoo, sender, tls_files):
    server = zoo(tls=_server_context(tls_files, ssl.TLSVersion.TLSv1_2))
    assert sender.post(server.url(), BODY, SIG).ok
    results = sender.post_many([(server.url(), BODY, SIG, ())] * 2, window=2)

    assert all(r.ok for r in results) and server.connections == 2
    assert server.resumed == [False, True]


def test_tls13_fast_answers_are_not_held_behind_a_slow_one(zoo, sender, tls_files):
    server = zoo(tls=_server_context(tls_files))
    with Sender(allowed_networks=LOOPBACK, deadline=3.0, ca_bundle=str(tls_files[0])) as roomy:
        results = roomy.post_many([(server.url("/slow"), BODY, SIG, ())] + [(server.url(), BODY, SIG, ())] * 3)

    assert all(r.ok for r in results)
    assert results[0].duration_ms >= 1000
    # Held behind the slow answer they would take its whole second; each
    # still makes a TLS handshake with a Python server, slow on a busy box.
    assert max(r.duration_ms for r in results[1:]) < 700


def _early_hints(conn, zoo):
    while read_request(conn):
        conn.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n")
        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        answer(conn, b"done")
        zoo.answered.append(time.time())


def test_1xx_answers_are_skipped(zoo, sender):
    server = zoo(_early_hints)
    result = sender.post(server.url(), BODY, SIG)

    assert result.ok and result.status_code == 200 and result.error_kind is None
    assert result.response_body == "done"
    assert "Link" not in result.response_headers


def _one_answer_per_connection(conn, zoo):
    # Answers keep-alive, then hangs up when the next request arrives on the connection.
    if read_request(conn):
        zoo.answered.append(time.time())
        answer(conn)
    read_request(conn)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")


def test_a_dropped_kept_alive_connection_is_retried_on_a_fresh_one(zoo, sender):
    server = zoo(_one_answer_per_connection)
    results = [sender.post(server.url(), BODY, SIG) for _ in range(4)]

    assert all(r.ok for r in results), [r.error_message for r in results]
    assert len(server.answered) == 4 and server.connections == 4


def _drip(conn, zoo):
    read_request(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
    while not zoo.stop.is_set():
        conn.sendall(b"a")
        time.sleep(0.1)


def test_a_slow_drip_is_cut_at_the_deadline(zoo):
    server = zoo(_drip)
    # A 2 s deadline: the status line must come before it even on a busy box
    # (the drip's 1,000 bytes would take 100 s).
    with Sender(allowed_networks=LOOPBACK, deadline=2.0) as sender:
        started = time.monotonic()
        result = sender.post(server.url(), BODY, SIG)

    assert result.error_kind == "timeout" and result.error_message == "Timed out after 2 s"
    assert result.status_code == 200  # the status line came, the body never finished
    assert time.monotonic() - started < 2.5


def _fifty_megabytes(conn, zoo):
    read_request(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (50 << 20))
    for _ in range(800):
        conn.sendall(b"x" * 65536)
        zoo.sent += 65536


def test_a_50_mb_reply_is_cut_at_4_kib_and_still_a_success(zoo, sender):
    server = zoo(_fifty_megabytes)
    result = sender.post(server.url(), BODY, SIG)

    assert result.ok and result.status_code == 200
    assert result.response_body == "x" * 4096
    time.sleep(0.3)
    assert server.sent < 50 << 20


@pytest.mark.parametrize("reply", [b"garbage\r\n\r\n", b"HTTP/1.1 2OO OK\r\n\r\n"], ids=["not-http", "bad-status"])
def test_invalid_http_is_a_connection_failure_in_words(zoo, sender, reply):
    server = zoo(lambda conn, zoo: read_request(conn) and conn.sendall(reply))
    result = sender.post(server.url(), BODY, SIG)

    assert not result.ok and result.error_kind == "connection"
    assert result.error_message.startswith("Invalid reply: the receiver did not answer in HTTP")


def test_a_proxy_in_the_environment_is_ignored(zoo, sender, monkeypatch):
    proxy, receiver = zoo(), zoo()
    for name in ("http_proxy", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{proxy.port}")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    with Sender(allowed_networks=LOOPBACK, deadline=1.0) as fresh:
        result = fresh.post(receiver.url(), BODY, SIG)

    assert result.ok and len(receiver.answered) == 1
    assert proxy.connections == 0


def _ipv6_available():
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_available(), reason="no ::1 on this box")
def test_ipv6_loopback_receiver(zoo, sender):
    server = zoo(host="::1")
    result = sender.post(server.url(), BODY, SIG)

    assert result.ok and len(server.answered) == 1


def test_the_request_carries_no_header_we_did_not_choose(zoo, sender):
    server = zoo()
    big = b"x" * (2 << 20)  # libcurl would ask "Expect: 100-continue" for a body this size
    assert sender.post(server.url(), big, SIG).ok

    head = server.answered[0][1].decode().lower()
    assert "expect:" not in head and "accept:" not in head and "accept-encoding:" not in head


# -- through the real drain ------------------------------------------------------------


def _point_at(app, url):
    with app.app_context():
        get_settings().url = url
        db.session.commit()


def _publish_calls(app, count):
    with app.app_context():
        for call_id in range(1, count + 1):
            publish_event("call_initiated", dict(example_envelope("call_initiated")["payload"], call_id=call_id))
        flush_rings()


def _attempts(app):
    with app.app_context():
        return db.session.scalars(select(Attempt)).all()


def _wait_for_workers(app, count, timeout=30):
    r = redis.Redis.from_url(app.config["REDIS_URL"])
    stop = time.monotonic() + timeout
    while len(Worker.all(connection=r)) < count:
        assert time.monotonic() < stop, "workers did not start"
        time.sleep(0.1)


@pytest.mark.slow
def test_32_calls_to_a_tls_receiver_with_1_5_s_handshakes_two_workers(
        app, integration, zoo, tls_files, start_worker, monkeypatch):
    server = zoo(tls=_server_context(tls_files), stall=1.5)
    _point_at(app, server.url())
    monkeypatch.setenv("HOOKLINE_CA_BUNDLE", str(tls_files[0]))
    start_worker(), start_worker()
    _wait_for_workers(app, 2)

    _publish_calls(app, 32)
    last_publish = time.time()
    stop = time.monotonic() + 20
    while len(server.answered) < 32 and time.monotonic() < stop:
        time.sleep(0.05)
    time.sleep(0.5)  # anything sent twice would have arrived by now

    print(f"\n32 calls, 1.5 s TLS handshakes, 2 workers: last received "
          f"{max(at for at, _ in server.answered) - last_publish:.2f} s after the last publish")
    assert len(server.answered) == 32
    ids = [dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:])["webhook-id"]
           for _, head in server.answered]
    assert len(set(ids)) == 32  # each once
    assert max(at for at, _ in server.answered) - last_publish < 10
    attempts = _attempts(app)
    assert [a.error_kind for a in attempts if a.error_kind] == []
    assert len(attempts) == 32


@pytest.mark.slow
def test_dropped_keep_alive_and_early_hints_through_a_worker(app, integration, zoo, start_worker):
    dropping, hinting = zoo(_one_answer_per_connection), zoo(_early_hints)
    start_worker()
    _wait_for_workers(app, 1)
    for server in (dropping, hinting):
        _point_at(app, server.url())
        published = []
        for call_id in range(1, 6):
            with app.app_context():
                publish_event("call_initiated", dict(example_envelope("call_initiated")["payload"], call_id=call_id))
                flush_rings()
            published.append(time.time())
            time.sleep(0.3)
        stop = time.monotonic() + 10
        while len(server.answered) < 5 and time.monotonic() < stop:
            time.sleep(0.05)
        answered = server.answered
        print(f"\n{server.script.__name__}: answered at most "
              f"{max(at - sent for at, sent in zip(answered, published)):.3f} s after its publish")
        assert len(answered) == 5
        # A dead kept-alive connection or a 103 that cost an attempt would
        # show as a retry, a second or more later (the test schedule's 1 s).
        assert max(at - sent for at, sent in zip(answered, published)) < 0.9

    with app.app_context():
        deliveries = db.session.scalars(select(Delivery)).all()
        assert [d.attempt_count for d in deliveries] == [1] * 10
    assert [a.error_kind for a in _attempts(app)] == [None] * 10
