"""A guarded URL fetcher for untrusted image URLs.

Rules (each refusal raises URLFetchError with the reason):
http/https only; ports 80/443 only; every address the host resolves to must be public
(no loopback, private, link-local, multicast, reserved or unspecified ranges); the connection
goes to the checked address (no second DNS lookup to rebind); redirects are followed by hand
and every hop is checked again; connect, read and total time limits; a byte cap; an
``image/*`` content type.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import presets
from pipelines.errors import URLFetchError

Resolver = Callable[[str, int], list[str]]


def system_resolver(host: str, port: int) -> list[str]:
    """All addresses (v4 and v6) the system resolver gives for ``host``."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise URLFetchError(f"cannot resolve host {host!r}: {exc.strerror}") from exc
    return sorted({str(info[4][0]) for info in infos})


@dataclass(frozen=True)
class FetchPolicy:
    """Limits for one fetch. ``loopback_ports`` exists for tests that run servers on
    loopback to exercise the other rules: loopback is allowed only on those ports (and those
    ports must also be in ``allowed_ports``). Leave it empty in production."""

    allowed_ports: tuple[int, ...] = (80, 443)
    max_bytes: int = presets.MAX_UPLOAD_BYTES
    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    total_timeout: float = 30.0
    max_redirects: int = 5
    loopback_ports: tuple[int, ...] = ()


def check_address(address: str, *, allow_loopback: bool = False) -> None:
    """Raise URLFetchError unless ``address`` is a public unicast address."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if allow_loopback and ip.is_loopback:
        return
    for attr, name in (
        ("is_loopback", "loopback"),
        ("is_link_local", "link-local"),
        ("is_private", "private"),
        ("is_multicast", "multicast"),
        ("is_reserved", "reserved"),
        ("is_unspecified", "unspecified"),
    ):
        if getattr(ip, attr):
            raise URLFetchError(f"refused: {address} is a {name} address, not a public one")
    if not ip.is_global:
        raise URLFetchError(f"refused: {address} is not a public address")


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, ip: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._ip = ip

    def connect(self) -> None:
        self.sock = socket.create_connection((self._ip, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, ip: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._ip = ip

    def connect(self) -> None:
        sock = socket.create_connection((self._ip, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def fetch_image_bytes(
    url: str, *, policy: FetchPolicy | None = None, resolver: Resolver = system_resolver
) -> tuple[bytes, str]:
    """Fetch ``url`` under ``policy``; returns (body, content type). Raises URLFetchError."""
    policy = policy or FetchPolicy()
    deadline = time.monotonic() + policy.total_timeout
    current = url
    for _hop in range(policy.max_redirects + 1):
        status, headers, body_or_location = _fetch_once(current, policy, resolver, deadline)
        if status in (301, 302, 303, 307, 308):
            current = urljoin(current, body_or_location.decode("latin-1"))
            continue
        if status != 200:
            raise URLFetchError(f"the server answered HTTP {status} for {_short(current)}")
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        if not ctype.startswith("image/"):
            raise URLFetchError(f"refused: content type is {ctype or 'missing'!r}, not an image (image/*)")
        return body_or_location, ctype
    raise URLFetchError(f"refused: more than {policy.max_redirects} redirects")


def _short(url: str) -> str:
    return url if len(url) <= 120 else url[:117] + "..."


def _fetch_once(
    url: str, policy: FetchPolicy, resolver: Resolver, deadline: float
) -> tuple[int, dict[str, str], bytes]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise URLFetchError(f"refused: scheme {scheme or 'missing'!r}; only http and https")
    host = parts.hostname
    if not host:
        raise URLFetchError(f"refused: no host in {_short(url)!r}")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError as exc:
        raise URLFetchError(f"refused: invalid port in {_short(url)!r}") from exc
    if port not in policy.allowed_ports:
        raise URLFetchError(f"refused: port {port}; allowed ports are {policy.allowed_ports}")
    addresses = resolver(host, port)
    if not addresses:
        raise URLFetchError(f"cannot resolve host {host!r}")
    for address in addresses:  # every address must be public, not just the first
        check_address(address, allow_loopback=port in policy.loopback_ports)
    timeout = min(policy.connect_timeout, max(0.1, deadline - time.monotonic()))
    conn_cls = _PinnedHTTPS if scheme == "https" else _PinnedHTTP
    conn = conn_cls(host, port, addresses[0], timeout)
    try:
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        try:
            conn.request("GET", path, headers={"User-Agent": "upscale-lab/1", "Accept": "image/*"})
            if conn.sock is not None:
                conn.sock.settimeout(min(policy.read_timeout, max(0.1, deadline - time.monotonic())))
            resp = conn.getresponse()
        except TimeoutError as exc:
            raise URLFetchError(f"timed out connecting to {host}") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise URLFetchError(f"cannot connect to {host}: {exc}") from exc
        headers = {k.lower(): v for k, v in resp.getheaders()}
        if resp.status in (301, 302, 303, 307, 308):
            location = headers.get("location")
            if not location:
                raise URLFetchError(f"redirect without a Location from {host}")
            return resp.status, headers, location.encode("latin-1")
        declared = headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > policy.max_bytes:
            raise URLFetchError(f"refused: body is {int(declared)} bytes; the limit is {policy.max_bytes}")
        body = _read_capped(resp, policy, deadline)
        return resp.status, headers, body
    finally:
        conn.close()


def _read_capped(resp: http.client.HTTPResponse, policy: FetchPolicy, deadline: float) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        if time.monotonic() > deadline:
            raise URLFetchError(f"refused: download took longer than {policy.total_timeout:g} s")
        try:
            chunk = resp.read1(65536)
        except TimeoutError as exc:
            raise URLFetchError(f"timed out reading (no data for {policy.read_timeout:g} s)") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise URLFetchError(f"connection broke while reading: {exc}") from exc
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > policy.max_bytes:
            raise URLFetchError(f"refused: body exceeds the limit of {policy.max_bytes} bytes")
        chunks.append(chunk)
