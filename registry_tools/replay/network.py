"""Blocking network access during a test: every connection but the allowed ones fails."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Iterator
from typing import Any


class NetworkBlocked(RuntimeError):
    """A socket connection a test is not allowed to make (deliberately not an OSError, so a
    client's retry logic cannot mistake it for a flaky network)."""


def _is_loopback(address: Any) -> bool:
    host = address[0] if isinstance(address, tuple) else address
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


@contextlib.contextmanager
def blocked_network(allow_loopback: bool) -> Iterator[None]:
    """Make `socket.connect` fail for internet addresses (loopback too unless allowed)."""
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def check(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not (
            allow_loopback and _is_loopback(address)
        ):
            raise NetworkBlocked(f"network access blocked during this test: connect to {address}")

    def connect(sock: socket.socket, address: Any) -> None:
        check(sock, address)
        return real_connect(sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> int:
        check(sock, address)
        return real_connect_ex(sock, address)

    socket.socket.connect, socket.socket.connect_ex = connect, connect_ex
    try:
        yield
    finally:
        socket.socket.connect, socket.socket.connect_ex = real_connect, real_connect_ex
