"""A network guard for tests: every connection but the allowed ones fails.

The semantics follow pytest-recording's `--block-network`: internet sockets (`AF_INET`,
`AF_INET6`) may only connect to hosts matching one of the allowed regular expressions
(`re.match` on the host); Unix sockets are never blocked. Beyond pytest-recording:

- loopback is blocked too unless asked for (`allow_loopback`), but a running
  `registry_emulator` registers its own address (`allowing`), so it keeps working;
- a host name in the allowed list also allows the addresses it resolved to during the test
  (sockets connect to addresses, and `api.example.com` resolves to one), which is why
  `socket.getaddrinfo` is watched while the guard is on;
- `opened_network()` lifts every guard (ours, or pytest-recording's) while a cassette records.

The guard patches `socket.socket.connect`/`connect_ex` and calls whatever was installed before
it, so guards nest and each restores exactly what it found. `socket.socketpair` stays usable:
on Windows it is a loopback connection, and asyncio builds every event loop's self-pipe on it.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

# The real methods, saved when pytest imports the plugin (before any guard is installed), so
# `opened_network` can lift any guard; Python's own, whatever else patched them later.
_REAL_CONNECT = socket.socket.connect
_REAL_CONNECT_EX = socket.socket.connect_ex

_INTERNET = (socket.AF_INET, socket.AF_INET6)
_socketpair = threading.local()
# (host, port) of servers the tests run themselves (the emulator), allowed by every guard
# that honours allowances.
_ALLOWED_ADDRESSES: set[tuple[str, int]] = set()


class NetworkBlocked(RuntimeError):
    """A socket connection a test is not allowed to make (deliberately not an OSError, so a
    client's retry logic cannot mistake it for a flaky network)."""


@dataclass(frozen=True)
class Policy:
    """What a guard lets through."""

    allowed_hosts: tuple[str, ...] = ()  # regular expressions, matched from the start
    allow_loopback: bool = False
    honour_allowances: bool = True  # let registered test servers (the emulator) through
    why: str = "network access is blocked during this test"

    def __post_init__(self) -> None:
        for pattern in self.allowed_hosts:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(
                    f"allowed host {pattern!r}: not a regular expression ({exc})"
                ) from None


@dataclass
class _Guard:
    policy: Policy
    resolved: dict[str, str] = field(default_factory=dict)  # address -> allowed host name
    names: dict[str, str] = field(default_factory=dict)  # address -> name it was resolved from

    def matches(self, host: str) -> bool:
        return any(re.match(pattern, host) for pattern in self.policy.allowed_hosts)

    def allows(self, address: Any) -> bool:
        host, port = _host_port(address)
        if self.matches(host) or host in self.resolved:
            return True
        if self.policy.allow_loopback and _is_loopback(host):
            return True
        return self.policy.honour_allowances and (host, port) in _ALLOWED_ADDRESSES

    def refuse(self, address: Any) -> NetworkBlocked:
        host, port = _host_port(address)
        name = f" ({self.names[host]})" if host in self.names else ""
        return NetworkBlocked(f"{self.policy.why}: connect to {host}:{port}{name}")

    def note_resolution(self, name: Any, answers: list) -> None:
        """Remember which addresses a name resolved to (allowed ones, and for messages)."""
        if not isinstance(name, str | bytes):
            return
        name = name.decode() if isinstance(name, bytes) else name
        allowed = self.matches(name)
        for *_, sockaddr in answers:
            if str(sockaddr[0]) != name:
                self.names.setdefault(str(sockaddr[0]), name)
            if allowed:
                self.resolved[str(sockaddr[0])] = name


def _host_port(address: Any) -> tuple[str, int]:
    if isinstance(address, tuple) and len(address) >= 2:
        return str(address[0]).split("%")[0], int(address[1])
    return str(address), 0


def _is_loopback(host: str) -> bool:
    import ipaddress  # only when a guard checks a connection: kept out of every pytest start

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@contextlib.contextmanager
def blocked_network(
    policy: Policy | None = None, *, allow_loopback: bool = False
) -> Iterator[None]:
    """Make internet connections fail unless `policy` (or just `allow_loopback`) allows them."""
    guard = _Guard(policy or Policy(allow_loopback=allow_loopback))
    previous_connect, previous_connect_ex = socket.socket.connect, socket.socket.connect_ex
    previous_getaddrinfo, previous_socketpair = socket.getaddrinfo, socket.socketpair

    def check(sock: socket.socket, address: Any) -> None:
        inside_socketpair = getattr(_socketpair, "active", False)
        if sock.family in _INTERNET and not inside_socketpair and not guard.allows(address):
            raise guard.refuse(address)

    def connect(sock: socket.socket, address: Any) -> None:
        check(sock, address)
        return previous_connect(sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> int:
        check(sock, address)
        return previous_connect_ex(sock, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> list:
        answers = previous_getaddrinfo(host, *args, **kwargs)
        guard.note_resolution(host, answers)
        return answers

    def socketpair(*args: Any, **kwargs: Any) -> tuple[socket.socket, socket.socket]:
        outer = getattr(_socketpair, "active", False)
        _socketpair.active = True
        try:
            return previous_socketpair(*args, **kwargs)
        finally:
            _socketpair.active = outer

    socket.socket.connect, socket.socket.connect_ex = connect, connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo, socket.socketpair = getaddrinfo, socketpair  # type: ignore[assignment]
    try:
        yield
    finally:
        socket.socket.connect, socket.socket.connect_ex = previous_connect, previous_connect_ex  # type: ignore[method-assign]
        socket.getaddrinfo, socket.socketpair = previous_getaddrinfo, previous_socketpair  # type: ignore[assignment]


@contextlib.contextmanager
def opened_network() -> Iterator[None]:
    """Lift every connection guard while the block runs (a cassette is recording)."""
    previous = socket.socket.connect, socket.socket.connect_ex
    socket.socket.connect, socket.socket.connect_ex = _REAL_CONNECT, _REAL_CONNECT_EX  # type: ignore[method-assign]
    try:
        yield
    finally:
        socket.socket.connect, socket.socket.connect_ex = previous  # type: ignore[method-assign]


@contextlib.contextmanager
def allowing(addresses: Iterable[tuple[str, int]]) -> Iterator[None]:
    """Let every guard that honours allowances through to these (host, port) pairs."""
    added = {(host, port) for host, port in addresses} - _ALLOWED_ADDRESSES
    _ALLOWED_ADDRESSES.update(added)
    try:
        yield
    finally:
        _ALLOWED_ADDRESSES.difference_update(added)


def split_hosts(text: str | Iterable[str] | None) -> tuple[str, ...]:
    """`a,b` (the option's form) or a list (the marker's) as a tuple of patterns."""
    if text is None:
        return ()
    items = text.split(",") if isinstance(text, str) else list(text)
    return tuple(item.strip() for item in items if str(item).strip())
