"""A user's tests of code that reads the registry: recorded once, replayed offline after."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from registry_tools.fetch.options import CacheOptions
from registry_tools.fetch.run import run_cache


async def _get(url: str) -> tuple[int, object]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.json()


def node_ids(base_url: str, page: int) -> list[str]:
    """The code under test: one page of node ids."""
    status, body = asyncio.run(_get(f"{base_url}/nodes?limit=2&page={page}"))
    assert status == 200
    return [node["id"] for node in body["nodes"]]


class TestNodes:
    @pytest.mark.registry_cassette
    def test_first_page(self, registry_base_url, registry_snapshot):
        assert registry_snapshot == node_ids(registry_base_url, 1)

    @pytest.mark.registry_cassette
    def test_second_page(self, registry_base_url, registry_snapshot):
        assert registry_snapshot == node_ids(registry_base_url, 2)


class TestPages:
    @pytest.mark.registry_cassette
    def test_first_page(self, registry_base_url, registry_snapshot):
        assert registry_snapshot("ids") == node_ids(registry_base_url, 1)


@pytest.mark.registry_cassette
@pytest.mark.parametrize("page", [1, 2], ids=["p/1", "p:2"])
def test_page_ids(page, registry_base_url):
    assert len(node_ids(registry_base_url, page)) == 2


def test_no_request(registry_cassette):
    """Makes no request: still records a cassette, so its replay passes."""


@pytest.mark.registry_cassette("small-registry")
def test_cache(
    tmp_path, monkeypatch, registry_base_url, registry_phase_cassettes, registry_snapshot
):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")  # pins cached_at
    options = CacheOptions(output=tmp_path / "cache.json", base_url=registry_base_url)
    assert run_cache(options, phase_context=registry_phase_cassettes).ok
    assert registry_snapshot("cache") == options.output
