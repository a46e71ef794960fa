"""SSRF guard: decide which IP addresses webhook deliveries may reach.

A webhook URL is typed by a customer, so without a guard the delivery
worker could be pointed at the metadata service, the database or anything
else on the private network.  The rules here are applied to the address a
name *resolves to*, not to the text of the URL, because a hostile name can
resolve to 127.0.0.1 and odd spellings such as ``http://2130706433/`` are
normalised by the resolver into ordinary dotted quads.

The module is pure: no Flask, no app code.  Operators can open holes with an
"allowed networks" list (for example a staging receiver on 10.1.2.0/24);
allowed networks always win over the default blocks.
"""

import ipaddress
import socket
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

_net = ipaddress.ip_network

#: Networks refused unless an allowed network covers the address.
DEFAULT_BLOCKED = [
    _net("0.0.0.0/8"),  # "this network"
    _net("10.0.0.0/8"),  # private
    _net("100.64.0.0/10"),  # shared address space (carrier-grade NAT)
    _net("127.0.0.0/8"),  # loopback
    _net("169.254.0.0/16"),  # link-local, home of cloud metadata services
    _net("172.16.0.0/12"),  # private
    _net("192.0.0.0/24"),  # IETF protocol assignments
    _net("192.0.2.0/24"),  # documentation (TEST-NET-1)
    _net("192.168.0.0/16"),  # private
    _net("198.18.0.0/15"),  # benchmarking
    _net("198.51.100.0/24"),  # documentation (TEST-NET-2)
    _net("203.0.113.0/24"),  # documentation (TEST-NET-3)
    _net("224.0.0.0/4"),  # multicast
    _net("240.0.0.0/4"),  # reserved
    _net("255.255.255.255/32"),  # broadcast
    _net("::/128"),  # unspecified
    _net("::1/128"),  # loopback
    _net("fc00::/7"),  # unique local (private)
    _net("fe80::/10"),  # link-local
    _net("fec0::/10"),  # site-local (deprecated, still routed inside some sites)
    _net("ff00::/8"),  # multicast
    _net("64:ff9b::/96"),  # NAT64: would reach any IPv4 address, private ones too
    _net("2001:db8::/32"),  # documentation
    # Beyond the classic list: ways of smuggling an IPv4 address inside IPv6.
    _net("::/96"),  # deprecated IPv4-compatible addresses (::127.0.0.1)
    _net("64:ff9b:1::/48"),  # local-use NAT64
    _net("::ffff:0:0:0/96"),  # IPv4-translated (SIIT): ::ffff:0:169.254.169.254
]

#: IPv4-translated addresses (RFC 2765) carry an IPv4 address in their last 32 bits.
_TRANSLATED = _net("::ffff:0:0:0/96")

# A human label for each kind of refused address, used in error messages.
_LABELS = [
    ("127.0.0.0/8", "loopback"),
    ("::1/128", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local"),
    ("10.0.0.0/8", "private"),
    ("172.16.0.0/12", "private"),
    ("192.168.0.0/16", "private"),
    ("fc00::/7", "private"),
    ("100.64.0.0/10", "shared (carrier-grade NAT)"),
    ("224.0.0.0/4", "multicast"),
    ("ff00::/8", "multicast"),
    ("0.0.0.0/8", "unspecified"),
    ("::/128", "unspecified"),
    ("192.0.2.0/24", "documentation"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("2001:db8::/32", "documentation"),
    ("198.18.0.0/15", "benchmarking"),
    ("64:ff9b::/96", "NAT64"),
    ("64:ff9b:1::/48", "NAT64"),
]
_LABELS = [(_net(cidr), label) for cidr, label in _LABELS]


class AddressNotAllowed(Exception):
    """A URL's host is, or resolves to, an address deliveries may not reach."""


def parse_networks(text):
    """Parse a comma-separated list of CIDR networks (``"10.0.0.0/8, ::1"``).

    Blank entries are ignored; a bare address counts as a single-host
    network.  Host bits are tolerated (``10.1.2.3/8`` means ``10.0.0.0/8``)
    because that is what a person typing the list means.  Raise
    ``ValueError`` naming the first entry that is not a network.
    """
    networks = []
    for entry in (text or "").split(","):
        entry = entry.strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"Not a valid network: {entry!r}") from None
    return networks


def _embedded_ipv4(addr):
    """Return the IPv4 address hidden in an IPv4-mapped, IPv4-translated or 6to4 address."""
    if addr.version != 6:
        return None
    if addr in _TRANSLATED:
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    return addr.ipv4_mapped or addr.sixtofour


def _candidates(ip):
    """The address itself, plus any IPv4 address it smuggles inside."""
    addr = ipaddress.ip_address(ip)
    inner = _embedded_ipv4(addr)
    return [addr, inner] if inner is not None else [addr]


def _in_any(addr, networks):
    # ``addr in net`` is simply False when the IP versions differ.
    return any(addr in net for net in networks)


def _refused(addr):
    return _in_any(addr, DEFAULT_BLOCKED) or not addr.is_global


def is_allowed(ip, allowed=()):
    """Return True if deliveries may connect to the IP address ``ip``.

    An address inside one of the ``allowed`` networks is always accepted.
    Otherwise it is refused when it, or an IPv4 address embedded in it
    (``::ffff:127.0.0.1``, 6to4 ``2002:7f00:1::``), is in
    ``DEFAULT_BLOCKED`` or is not globally routable.
    """
    candidates = _candidates(ip)
    allowed = list(allowed or ())
    if any(_in_any(addr, allowed) for addr in candidates):
        return True
    return not any(_refused(addr) for addr in candidates)


def describe(ip):
    """Name the kind of a refused address in plain words, e.g. ``"loopback"``."""
    for addr in reversed(_candidates(ip)):
        for network, label in _LABELS:
            if addr in network:
                return label
    return "reserved or non-public"


def _strip_scope(ip):
    # getaddrinfo reports IPv6 link-local addresses as "fe80::1%eth0".
    return ip.split("%", 1)[0]


def a_or_an(word):
    """``word`` with its indefinite article: "an unspecified", "a loopback"."""
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"


def _refusal(host, ip):
    kind = a_or_an(describe(ip))
    if host.strip("[]") == ip:
        return f"{ip} is {kind} address"
    return f"{host} resolves to {ip}, which is {kind} address"


def resolve_checked(host, port, allowed=()):
    """Resolve ``host`` once and refuse it if any address is not allowed.

    Return the ``socket.getaddrinfo`` list so the caller connects to exactly
    the addresses that were vetted (resolving again could give a different
    answer: DNS rebinding).  Every address must pass, not just one, so a name
    cannot mix a public address with a private one.  Resolver errors
    (``socket.gaierror``) propagate; a refused address raises
    ``AddressNotAllowed``.
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    for info in infos:
        ip = _strip_scope(info[4][0])
        if not is_allowed(ip, allowed):
            raise AddressNotAllowed(_refusal(host, ip))
    return infos


#: How long a form waits for the URL's name to resolve. ``getaddrinfo`` has
#: no timeout of its own (a lost DNS packet costs the resolver's 5 s per
#: try); a name that has not resolved by then counts as not resolving yet.
FORM_RESOLVE_SECONDS = 2.0
_form_resolver = ThreadPoolExecutor(max_workers=4, thread_name_prefix="form-resolve")


def check_url_host(url, allowed=()):
    """Raise ``AddressNotAllowed`` if the host of ``url`` is refused; return within FORM_RESOLVE_SECONDS.

    Meant for form validation: a name that does not resolve (yet), or not
    within FORM_RESOLVE_SECONDS, is not an error here, since the delivery
    itself will report it; the sender checks again at connection time in
    any case.
    """
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        return
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    try:
        _form_resolver.submit(resolve_checked, host, port, allowed).result(timeout=FORM_RESOLVE_SECONDS)
    except (socket.gaierror, UnicodeError, TimeoutError):
        # Unknown name, one the IDNA codec cannot even encode, or a resolver too slow to wait for.
        return
