"""What a send's outcome means, in words a person can act on.

The sender (tasks/sender.py) speaks through libcurl; this module turns
libcurl's result codes, and the answers that are not a 2xx, into the
``(error_kind, error_message)`` pairs the delivery log and the Test button
show (tasks/testsend.py gives each kind its advice).  Pure: no curl
handles, no Flask.
"""

import email.utils
import errno
import ipaddress
import os
import re
import socket
from datetime import datetime, timezone
from urllib.parse import quote, urlsplit

import pycurl

from . import netguard

# libcurl result codes that mean the TLS layer failed.
_TLS_CODES = {
    pycurl.E_SSL_CONNECT_ERROR, pycurl.E_SSL_CERTPROBLEM, pycurl.E_SSL_CIPHER,
    pycurl.E_SSL_CACERT_BADFILE, pycurl.E_SSL_ISSUER_ERROR, pycurl.E_SSL_PINNEDPUBKEYNOTMATCH,
    pycurl.E_SSL_INVALIDCERTSTATUS, pycurl.E_SSL_ENGINE_NOTFOUND, pycurl.E_SSL_ENGINE_SETFAILED,
}
_CERT_CODES = {pycurl.E_PEER_FAILED_VERIFICATION, pycurl.E_SSL_CACERT}
# The receiver's bytes were not an HTTP answer (HTTP/0.9 counts: curl refuses it).
_NOT_HTTP_CODES = {pycurl.E_FTP_WEIRD_SERVER_REPLY, pycurl.E_UNSUPPORTED_PROTOCOL}  # 8 is any protocol's
_DNS_NOT_FOUND = {socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)}


def default_port(scheme):
    """The port an http(s) URL without one means."""
    return 443 if scheme == "https" else 80


def http_url_parts(url):
    """``url`` split, if it is an absolute http(s) URL with a host and a valid port; else None.

    ``example.com/hook`` is not taken for an http URL, and a host name with
    an empty label or one over 63 characters is malformed (the IDNA codec
    refuses it), so a bad URL is described, never raised.
    """
    try:
        parts = urlsplit(url)
        parts.port  # ValueError when out of range or not a number
        if parts.hostname:
            parts.hostname.encode("idna")  # UnicodeError is a ValueError
    except ValueError:
        return None
    return parts if parts.scheme in ("http", "https") and parts.hostname else None


def host_port(parts):
    """(host, port) of a split URL, the host as DNS and libcurl see it (IDNA)."""
    return parts.hostname.encode("idna").decode("ascii"), parts.port or default_port(parts.scheme)


def is_ip_literal(host):
    """True if ``host`` is an IP address written out (libcurl does not resolve those)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def request_target(parts):
    """The path and query of ``parts`` for the request line, percent-encoded; never the fragment."""
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return quote(target, safe="!#$%&'()*+,/:;=?@[]~")


def authority(url):
    """``(host, "host:port")`` of ``url`` for messages; IPv6 hosts bracketed."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    try:
        port = parts.port
    except ValueError:
        port = None
    shown = f"[{host}]" if ":" in host else host
    return host, f"{shown}:{port or default_port(parts.scheme)}"


def describe_status(status, headers):
    """Return (error_kind, error_message) for a final status that is not 2xx."""
    if 300 <= status < 400:
        location = headers.get("Location") or headers.get("location")
        where = f"to {location}" if location else "without a Location"
        return "redirect", f"Redirect not followed ({status} {where})"
    return "http_status", f"HTTP {status} from receiver"


def describe_lookup_error(exc, url, deadline):
    """Return (error_kind, error_message) for a failed netguard lookup of ``url``'s host."""
    host, _ = authority(url)
    if isinstance(exc, netguard.AddressNotAllowed):
        return "address_not_allowed", f"Address not allowed: {exc}"
    if isinstance(exc, TimeoutError):
        return "dns", f"DNS lookup failed for {host}: no answer within {deadline:g} s"
    if isinstance(exc, socket.gaierror) and exc.errno in _DNS_NOT_FOUND:
        return "dns", f"DNS name not found: {host}"
    reason = getattr(exc, "strerror", None) or str(exc) or "lookup failed"
    return "dns", f"DNS lookup failed for {host}: {reason}"


def describe_vetoed(host, ip):
    """Message for a connect the sender refused because ``ip`` was not among the checked addresses."""
    if not netguard.is_allowed(ip):
        return "address_not_allowed", f"Address not allowed: {ip} is {netguard.a_or_an(netguard.describe(ip))} address"
    return "address_not_allowed", f"Address not allowed: {ip} is not an address {host} was checked to have"


def _tls_reason(text):
    for prefix in ("SSL certificate problem: ", "SSL: ", "OpenSSL SSL_connect: ", "TLS connect error: "):
        if text.startswith(prefix):
            text = text[len(prefix):]
    # OpenSSL's "error:0A00010B:SSL routines::wrong version number": the words are the news.
    return re.sub(r"^error:[0-9A-F]+:[^:]*:[^:]*:", "", text) or "no details"


def describe_curl_error(code, text, os_errno, url, deadline):
    """Return (error_kind, error_message) for libcurl result ``code``.

    ``text`` is libcurl's error buffer and ``os_errno`` the last system
    error it saw (``CURLINFO_OS_ERRNO``); they pick the words within a kind.
    """
    host, where = authority(url)
    if code == pycurl.E_OPERATION_TIMEDOUT:
        return "timeout", f"Timed out after {deadline:g} s"
    if code == pycurl.E_COULDNT_CONNECT:
        if os_errno == errno.ECONNREFUSED:
            return "refused", f"Connection refused by {where}"
        reason = f": {_strerror(os_errno)}" if os_errno else ""
        return "connection", f"Could not connect to {where}{reason}"
    if code == pycurl.E_COULDNT_RESOLVE_HOST:
        return "dns", f"DNS name not found: {host}"
    if code in _CERT_CODES:
        return "tls", f"TLS certificate problem: {_tls_reason(text)}"
    if code in _TLS_CODES:
        return "tls", f"TLS handshake failed: {_tls_reason(text)}"
    if code == pycurl.E_GOT_NOTHING:
        return "connection", "Receiver closed the connection without answering"
    if code in (pycurl.E_RECV_ERROR, pycurl.E_SEND_ERROR):
        if os_errno in (errno.ECONNRESET, errno.EPIPE):
            return "connection", "Connection reset by receiver"
        step = "reading the reply" if code == pycurl.E_RECV_ERROR else "sending the request"
        return "connection", f"Connection broken while {step}"
    if code == pycurl.E_PARTIAL_FILE:
        return "connection", "Connection broken while reading the reply"
    if code in _NOT_HTTP_CODES:
        return "connection", f"Invalid reply: the receiver did not answer in HTTP ({text or code})"
    if code == pycurl.E_URL_MALFORMAT:
        return "connection", f"Invalid URL: {url}"
    return "connection", f"Connection failed: {text or f'libcurl error {code}'}"


def _strerror(number):
    try:
        return os.strerror(number).lower()
    except ValueError:
        return f"error {number}"


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
