"""The pytest plugin's options and markers, built to live beside pytest-recording and syrupy.

Every option has a namespaced name that always works (`--registry-record-mode`,
`--registry-block-network`, `--registry-allowed-hosts`, `--registry-allow-loopback`,
`--registry-snapshot-update`, `--registry-snapshot-warn-unused`). The short names users know
from pytest-recording (`--record-mode`, `--block-network`, `--allowed-hosts`) and syrupy
(`--snapshot-update`, `--snapshot-warn-unused`) belong to those plugins when they are installed:
then this plugin does not register them (two plugins registering one option is a usage error
that stops pytest before it collects anything) and reads theirs as a fallback instead, so
`pytest --record-mode once` records both plugins' cassettes and `pytest --snapshot-update`
updates both plugins' snapshots. When they are not installed, the short names are aliases of
the namespaced ones.

Precedence, as in pytest-recording: the command line beats the marker, the marker beats the
default (`none`: replay only).
"""

from __future__ import annotations

import argparse
import importlib.util
from dataclasses import dataclass
from typing import Any

import pytest

from registry_tools.replay.naming import checked_name
from registry_tools.replay.network import Policy, split_hosts

# vcrpy's modes, plus pytest-recording's `rewrite` (re-record from scratch: our `all`).
RECORD_MODES = ("none", "once", "new_episodes", "all", "rewrite")
GROUP = "registry-tools"


@dataclass(frozen=True)
class Neighbour:
    """Another plugin whose option names we share: its entry-point name and module."""

    plugin: str
    module: str

    def present(self, pluginmanager: pytest.PytestPluginManager) -> bool:
        """Loaded, or installed and about to be (pytest loads entry points one at a time)."""
        if pluginmanager.has_plugin(self.plugin):
            return True
        if pluginmanager.is_blocked(self.plugin):  # -p no:<plugin>
            return False
        return importlib.util.find_spec(self.module) is not None


RECORDING = Neighbour("recording", "pytest_recording")
SYRUPY = Neighbour("syrupy", "syrupy")


def add_options(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    group = parser.getgroup(GROUP, "registry-tools: cassettes, network guard, JSON snapshots")
    recording, syrupy = RECORDING.present(pluginmanager), SYRUPY.present(pluginmanager)
    _add(
        group,
        "--registry-record-mode",
        None if recording else "--record-mode",
        choices=RECORD_MODES,
        default=None,
        help="record mode of the registry cassette fixtures; beats the marker's "
        "(default: the marker's, else none = replay only; rewrite = all)",
    )
    _add(
        group,
        "--registry-block-network",
        None if recording else "--block-network",
        action="store_true",
        help="fail every internet connection except allowed hosts and a running "
        "registry_emulator (lifted while a registry cassette records)",
    )
    _add(
        group,
        "--registry-allowed-hosts",
        None if recording else "--allowed-hosts",
        default=None,
        metavar="REGEX[,REGEX...]",
        help="hosts (regular expressions) the network guard lets through",
    )
    _add(
        group,
        "--registry-allow-loopback",
        None,
        action="store_true",
        help="let the network guard through to loopback addresses",
    )
    _add(
        group,
        "--registry-snapshot-update",
        None if syrupy else "--snapshot-update",
        action="store_true",
        help="write missing or differing registry snapshots, delete unused ones",
    )
    _add(
        group,
        "--registry-snapshot-warn-unused",
        None if syrupy else "--snapshot-warn-unused",
        action="store_true",
        help="report unused registry snapshots without failing the run",
    )


def _add(group: Any, name: str, alias: str | None, **attrs: Any) -> None:
    """Add `name` (and `alias` unless another plugin already took it)."""
    attrs["dest"] = name.lstrip("-").replace("-", "_")
    if alias is not None:
        try:
            group.addoption(name, alias, **attrs)
            return
        except argparse.ArgumentError:  # a third plugin owns the short name: keep ours only
            pass
    group.addoption(name, **attrs)


MARKERS = (
    "registry_cassette(name=None, *, record_mode=None): the test records/replays registry "
    "traffic in a cassette (the marker alone switches it on); name it (default: the test's "
    "qualified name) and give the mode used when the command line gives none",
    "registry_block_network(*, allowed_hosts=None, allow_loopback=False): block the network "
    "for this test, as --registry-block-network does",
    "registry_emulator(nodes=20, seed=0, **knobs): data set and Faults of registry_emulator",
)


def _option(config: pytest.Config, ours: str, theirs: str) -> Any:
    """Our option's value, else the neighbour plugin's (None when it is not installed)."""
    value = config.getoption(ours)
    return value if value not in (None, False) else config.getoption(theirs, None)


def cassette_marker(item: pytest.Item) -> tuple[str | None, str | None]:
    """(name, record_mode) of the test's `registry_cassette` marker; ValueError if malformed."""
    marker = item.get_closest_marker("registry_cassette")
    if marker is None:
        return None, None
    kwargs = dict(marker.kwargs)
    if len(marker.args) > 1 or (marker.args and "name" in kwargs):
        raise ValueError("@registry_cassette takes one name")
    name = marker.args[0] if marker.args else kwargs.pop("name", None)
    mode = kwargs.pop("record_mode", None)
    if kwargs:
        raise ValueError(f"@registry_cassette: unknown argument(s) {', '.join(sorted(kwargs))}")
    if mode is not None and mode not in RECORD_MODES:
        raise ValueError(
            f"@registry_cassette(record_mode={mode!r}): expected one of {', '.join(RECORD_MODES)}"
        )
    return (None if name is None else checked_name(name, "@registry_cassette name")), mode


def record_mode(item: pytest.Item) -> str:
    """The cassette mode for a test: command line, then its marker, then `none`."""
    _, marked = cassette_marker(item)
    mode = _option(item.config, "registry_record_mode", "record_mode") or marked or "none"
    return "all" if mode == "rewrite" else mode


def guard_policy(item: pytest.Item) -> Policy | None:
    """The network guard a test runs under (None: no guard)."""
    marker = item.get_closest_marker("registry_block_network")
    config = item.config
    if marker is None and not config.getoption("registry_block_network"):
        return None
    kwargs = dict(marker.kwargs) if marker else {}
    hosts = kwargs.pop("allowed_hosts", None)
    loopback = kwargs.pop("allow_loopback", False)
    if marker is not None and (marker.args or kwargs):
        raise ValueError(
            "@registry_block_network takes only allowed_hosts= and allow_loopback=, got "
            + ", ".join([*map(repr, marker.args), *sorted(kwargs)])
        )
    return Policy(
        allowed_hosts=split_hosts(
            hosts or _option(config, "registry_allowed_hosts", "allowed_hosts")
        ),
        allow_loopback=bool(loopback or config.getoption("registry_allow_loopback")),
    )


def replay_policy(item: pytest.Item, mode: str) -> Policy:
    """A replaying cassette never reaches a socket, loopback and the emulator included."""
    allowed = guard_policy(item)
    return Policy(
        allowed_hosts=allowed.allowed_hosts if allowed else (),
        allow_loopback=bool(allowed and allowed.allow_loopback),
        honour_allowances=False,
        why=f"a registry cassette replaying (record mode {mode!r}) must not reach the network",
    )


def snapshot_update(config: pytest.Config) -> bool:
    return bool(_option(config, "registry_snapshot_update", "update_snapshots"))


def snapshot_warn_unused(config: pytest.Config) -> bool:
    return bool(_option(config, "registry_snapshot_warn_unused", "warn_unused_snapshots"))
