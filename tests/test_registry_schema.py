"""Every answer the stand-in registry gives, errors included, fits the schema of the published
API (tests/schema/registry-api.schema.json), so the emulator cannot drift from the real API
unnoticed; and the schema rejects wrong answers, so this test can fail."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from _registry_http import node_entry, request, version_entry
from referencing import Registry, Resource

from registry_tools import clock
from registry_tools.fetch import cache_file
from registry_tools.registry import synth
from registry_tools.registry.emulator import ENDPOINTS, Behaviour, Faults, running_emulator

SCHEMA = json.loads((Path(__file__).parent / "schema" / "registry-api.schema.json").read_text())
RESOURCES = Registry().with_resource(SCHEMA["$id"], Resource.from_contents(SCHEMA))


def validate(endpoint: str, status: int, body: Any) -> None:
    """Check `body` against the schema of `endpoint`'s answer with `status`."""
    answers = SCHEMA["x-endpoints"][endpoint]
    target = answers.get(str(status), SCHEMA["x-endpoints"]["default"])
    validator = jsonschema.Draft202012Validator(
        {"$ref": SCHEMA["$id"] + target["$ref"]}, registry=RESOURCES
    )
    validator.validate(body)


def _cache() -> dict[str, Any]:
    comfy = {
        "comfy_node_name": "Shared",
        "input_types": '{"required": {"image": ["IMAGE"]}}',
        "return_types": '["IMAGE"]',
        "return_names": '["image"]',
        "output_is_list": [False],
        "policy": "ComfyNodePolicyActive",
    }
    pack = node_entry(
        "pack",
        [
            version_entry("1.0.0", comfy_nodes=[comfy], status="NodeVersionStatusActive"),
            version_entry("2.0.0-rc.1", download_url=None, status="NodeVersionStatusPending"),
            version_entry("0.9.0", deprecated=True, comfy_node_extract_status="failed"),
        ],
        status="NodeStatusActive",
        preempted_comfy_node_names=["Shared"],
        search_ranking=3,
        repository="https://github.com/someone/pack",
        downloads=10,
        publisher={"id": "someone", "name": "Someone"},
        latest_version={"version": "1.0.0", "downloadUrl": None},
    )
    other = node_entry("other", [version_entry("1.0.0", comfy_nodes=[comfy])], downloads=99)
    banned = node_entry("banned", [], status="NodeStatusBanned", versions_unavailable="banned")
    return cache_file.build_cache([pack, other, banned])


VERSION = "GET /nodes/{nodeId}/versions/{version}"
INSTALL = "GET /nodes/{nodeId}/install"
# (endpoint, path segments, query, body, expected status)
CASES = [
    ("GET /nodes", ("nodes",), {}, None, 200),
    ("GET /nodes", ("nodes",), {"include_banned": "true", "latest": "true", "page": 0}, None, 200),
    ("GET /nodes", ("nodes",), {"timestamp": "2020-01-01T00:00:00Z"}, None, 200),
    ("GET /nodes", ("nodes",), {"limit": "x"}, None, 400),
    ("GET /nodes/search", ("nodes", "search"), {"search": "pack"}, None, 200),
    ("GET /nodes/search", ("nodes", "search"), {"comfy_node_search": "Shared"}, None, 200),
    ("GET /nodes/search", ("nodes", "search"), {"repository_url_search": "someone"}, None, 200),
    ("GET /nodes/search", ("nodes", "search"), {"page": -1}, None, 400),
    ("GET /nodes/{nodeId}", ("nodes", "pack"), {}, None, 200),
    ("GET /nodes/{nodeId}", ("nodes", "banned"), {}, None, 403),
    ("GET /nodes/{nodeId}", ("nodes", "nope"), {}, None, 404),
    ("GET /nodes/{nodeId}/versions", ("nodes", "pack", "versions"), {}, None, 200),
    (
        "GET /nodes/{nodeId}/versions",
        ("nodes", "pack", "versions"),
        {"statuses": ["NodeVersionStatusActive", "NodeVersionStatusPending"]},
        None,
        200,
    ),
    ("GET /nodes/{nodeId}/versions", ("nodes", "pack", "versions"), {"statuses": "X"}, None, 400),
    ("GET /nodes/{nodeId}/versions", ("nodes", "banned", "versions"), {}, None, 403),
    ("GET /nodes/{nodeId}/versions", ("nodes", "nope", "versions"), {}, None, 404),
    (
        VERSION,
        ("nodes", "pack", "versions", "1.0.0"),
        {},
        None,
        200,
    ),
    (
        VERSION,
        ("nodes", "pack", "versions", "2.0.0-rc.1"),
        {},
        None,
        200,
    ),
    (VERSION, ("nodes", "banned", "versions", "1"), {}, None, 403),
    (VERSION, ("nodes", "pack", "versions", "3"), {}, None, 404),
]
COMFY = "GET /nodes/{nodeId}/versions/{version}/comfy-nodes"
CASES += [
    (COMFY, ("nodes", "pack", "versions", "1.0.0", "comfy-nodes"), {"limit": 50}, None, 200),
    (COMFY, ("nodes", "pack", "versions", "0.9.0", "comfy-nodes"), {}, None, 200),  # null
    (COMFY, ("nodes", "pack", "versions", "1.0.0", "comfy-nodes"), {"limit": 0}, None, 400),
    (COMFY, ("nodes", "banned", "versions", "1.0.0", "comfy-nodes"), {}, None, 403),
    (COMFY, ("nodes", "pack", "versions", "3.0.0", "comfy-nodes"), {}, None, 404),
    (INSTALL, ("nodes", "pack", "install"), {"version": "1.0.0"}, None, 200),
    (INSTALL, ("nodes", "pack", "install"), {}, None, 200),
    (
        INSTALL,
        ("nodes", "pack", "install"),
        {"version": "2.0.0-rc.1"},
        None,
        400,
    ),
    (INSTALL, ("nodes", "banned", "install"), {}, None, 403),
    (INSTALL, ("nodes", "pack", "install"), {"version": "9.9.9"}, None, 404),
    ("GET /versions", ("versions",), {"pageSize": 100}, None, 200),
    ("GET /versions", ("versions",), {"statuses": "NodeVersionStatusPending"}, None, 200),
    ("GET /versions", ("versions",), {"nodeId": "pack", "page": 2, "pageSize": 1}, None, 200),
    ("GET /versions", ("versions",), {"pageSize": 101}, None, 400),
    ("GET /versions", ("versions",), {"nodeId": "banned"}, None, 403),
]
BULK = "POST /bulk/nodes/versions"
CASES += [
    (
        BULK,
        ("bulk", "nodes", "versions"),
        {},
        {
            "node_versions": [
                {"node_id": "pack", "version": "1.0.0"},
                {"node_id": "pack", "version": "7.7.7"},
                {"node_id": "nope", "version": "1.0.0"},
                {"node_id": "banned", "version": "1.0.0"},
            ]
        },
        200,
    ),
    (BULK, ("bulk", "nodes", "versions"), {}, {"node_versions": [{"node_id": 1}]}, 400),
    (BULK, ("bulk", "nodes", "versions"), {}, b"not json", 400),
    ("GET /comfy-nodes/{comfyNodeName}/node", ("comfy-nodes", "Shared", "node"), {}, None, 200),
    ("GET /comfy-nodes/{comfyNodeName}/node", ("comfy-nodes", "Nope", "node"), {}, None, 404),
]


@pytest.fixture(scope="module")
def served() -> Any:
    behaviour = Behaviour(install_effects=True, enforce_statuses=True, pending_share=0.3, seed=1)
    with running_emulator(_cache(), behaviour=behaviour) as emu:
        yield emu


def _method(endpoint: str) -> str:
    return endpoint.split()[0]


@pytest.mark.parametrize(("endpoint", "segments", "query", "body", "status"), CASES)
def test_every_answer_fits_the_schema(served, endpoint, segments, query, body, status) -> None:
    got, _, answer = request(served.url, _method(endpoint), segments, body, **query)
    assert got == status, answer
    validate(endpoint, got, answer)
    if status >= 400:
        assert set(answer) == {"error", "message"}  # ours always sends both


def test_the_cases_cover_every_endpoint_and_status_of_the_schema() -> None:
    covered = {(endpoint, str(status)) for endpoint, *_, status in CASES}
    declared = {
        (endpoint, status)
        for endpoint, answers in SCHEMA["x-endpoints"].items()
        if endpoint != "default"
        for status in answers
    }
    assert covered == declared
    assert set(ENDPOINTS) == {endpoint for endpoint, _ in declared}


def test_other_statuses_fit_the_default_error_body(served) -> None:
    limited = Behaviour(rate_limit=1.0, rate_burst=1.0)
    with running_emulator(_cache(), behaviour=limited, clock=lambda: 0.0) as emu:
        answers = [request(emu.url, "GET", ("nodes",)) for _ in range(2)][1:]
    with running_emulator(_cache(), Faults(rate_500=1.0)) as emu:
        answers.append(request(emu.url, "GET", ("nodes",)))
    answers.append(request(served.url, "DELETE", ("nodes",)))
    answers.append(request(served.url, "GET", ("users",)))
    assert [status for status, _, _ in answers] == [429, 500, 405, 404]
    for status, _, body in answers:
        validate("GET /nodes", status, body)


def test_a_synthetic_registry_fits_the_schema() -> None:
    clock.pin("2026-01-02T03:04:05Z")
    try:
        cache = synth.generate(40, 2)
    finally:
        clock.pin(None)
    unlimited = dataclasses.replace(Behaviour.realistic(), rate_limit=0.0)
    with running_emulator(cache, behaviour=unlimited) as emu:
        for page in (1, 2):
            status, _, body = request(emu.url, "GET", ("nodes",), page=page, limit=30)
            validate("GET /nodes", status, body)
        for node in cache["nodes"]:
            status, _, body = request(emu.url, "GET", ("nodes", node["id"], "versions"))
            validate("GET /nodes/{nodeId}/versions", status, body)
            for entry in node.get("versions_list", [])[:3]:
                path = ("nodes", node["id"], "versions", entry["version"], "comfy-nodes")
                status, _, body = request(emu.url, "GET", path, limit=100)
                validate(COMFY, status, body)
        status, _, body = request(emu.url, "GET", ("versions",), pageSize=100)
        validate("GET /versions", status, body)


@pytest.mark.parametrize(
    ("endpoint", "status", "change"),
    [
        (VERSION, 200, lambda b: b.update(downloadUrl=None)),
        (VERSION, 200, lambda b: b.pop("downloadUrl")),
        (VERSION, 200, lambda b: b.update(comfy_nodes=[])),
        (VERSION, 200, lambda b: b.update(deprecated="false")),
        (VERSION, 200, lambda b: b.update(status="Active")),
        ("GET /nodes/{nodeId}", 200, lambda b: b.update(versions_list=[])),
        ("GET /nodes/{nodeId}", 200, lambda b: b.update(downloads="10")),
        ("GET /nodes", 200, lambda b: b.pop("total")),
        (COMFY, 200, lambda b: b.update(comfy_nodes={})),
        (COMFY, 200, lambda b: b.pop("totalNumberOfPages")),
        ("GET /versions", 200, lambda b: b.update(pageSize=500)),
        (BULK, 200, lambda b: b["node_versions"][0].pop("node_version")),
        ("GET /nodes/{nodeId}", 404, lambda b: b.pop("message")),
    ],
)
def test_the_schema_rejects_wrong_answers(served, endpoint, status, change) -> None:
    case = next(c for c in CASES if c[0] == endpoint and c[4] == status)
    _, _, answer = request(served.url, _method(endpoint), case[1], case[3], **case[2])
    validate(endpoint, status, answer)
    wrong = copy.deepcopy(answer)
    change(wrong)
    with pytest.raises(jsonschema.ValidationError):
        validate(endpoint, status, wrong)
