"""A user's tests run under `--registry-block-network`: only allowed hosts and the emulator."""

from __future__ import annotations

import socket

import pytest

from registry_tools.replay.network import NetworkBlocked


def connect(host: str, port: int) -> None:
    socket.create_connection((host, port), timeout=5).close()


@pytest.fixture
def local_server():
    """A plain TCP server on loopback, as a test's own service would be."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server.getsockname()[1]


def test_internet_is_blocked():
    with pytest.raises(NetworkBlocked, match="192.0.2.1:80"):
        connect("192.0.2.1", 80)


def test_loopback_is_blocked(local_server):
    with pytest.raises(NetworkBlocked, match="127.0.0.1"):
        connect("127.0.0.1", local_server)


@pytest.mark.registry_block_network(allowed_hosts=["localhost"])
def test_allowed_host_by_name(local_server):
    connect("localhost", local_server)  # allowed by name: the addresses it resolves to pass
    with pytest.raises(NetworkBlocked):
        connect("192.0.2.1", 80)


@pytest.mark.registry_block_network(allow_loopback=True)
def test_loopback_on_request(local_server):
    connect("127.0.0.1", local_server)


def test_emulator_still_answers(registry_emulator):
    host, port = registry_emulator.url.rsplit("/", 1)[1].split(":")
    connect(host, int(port))


@pytest.mark.registry_cassette
def test_recording_lifts_the_guard(registry_record_mode, local_server):
    if registry_record_mode == "none":
        with pytest.raises(NetworkBlocked, match="replaying"):
            connect("127.0.0.1", local_server)
    else:
        connect("127.0.0.1", local_server)
