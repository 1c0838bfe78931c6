"""The error contract (docs/errors.md), checked on generated bad input.

Hypothesis mutates valid caches, mappings files, workflows, cassette sets and notebook
parameters (a value replaced by one of the wrong type, a key removed, a node duplicated, the
bytes truncated or garbled), runs the commands on them in a temporary directory, and checks
every case: exit status 0, 1 or 2; on 2, exactly one line on stderr starting with the program
name and no traceback; no input file changed; nothing left beside the output on exit 2, and
nothing but the expected files otherwise.

`REGISTRY_TOOLS_FUZZ_EXAMPLES` sets the examples per test (default 15, enough for the
default run); run longer with e.g. `REGISTRY_TOOLS_FUZZ_EXAMPLES=500 python -m pytest
tests/test_bad_input.py`.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from registry_tools import files
from registry_tools.cli import PROG, main
from registry_tools.mappings.build import MappingsOptions, build_mappings
from registry_tools.registry import synth
from registry_tools.replay.cassettes import bundled_cassettes

EXAMPLES = int(os.environ.get("REGISTRY_TOOLS_FUZZ_EXAMPLES", "15"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=os.environ.get("REGISTRY_TOOLS_FUZZ_RANDOM") is None,  # CI: the same cases
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
PINNED = {"SOURCE_DATE_EPOCH": "1767225600"}

# Values a hand edit, a buggy writer or a hostile file puts where something else belongs.
ODD_VALUES = st.sampled_from(
    [
        None,
        True,
        False,
        0,
        -1,
        2.5,
        10**30,
        "",
        "x",
        "false",
        "200",
        "\ud800",  # a lone surrogate: valid JSON text, not valid UTF-8
        "\x00",
        [],
        {},
        [None],
        {"": None},
        "9" * 400,
    ]
)


# ---- running a command ------------------------------------------------------------------------


@dataclass
class Outcome:
    status: int
    stdout: bytes
    stderr: str


def run(*argv: str) -> Outcome:
    """`registry-tools ARGV` in this process (a subprocess each would cost ~1 s)."""
    out, err = io.BytesIO(), io.StringIO()
    stdout = io.TextIOWrapper(out, encoding="utf-8", write_through=True)
    with (
        contextlib.redirect_stdout(stdout),
        contextlib.redirect_stderr(err),
        _env(PINNED),
    ):
        try:
            status = main(list(argv))
        except SystemExit as exc:  # argparse
            status = exc.code if isinstance(exc.code, int) else 2
    return Outcome(status, out.getvalue(), err.getvalue())


@contextlib.contextmanager
def _env(values: dict[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _digests(directory: Path) -> dict[str, str]:
    return {
        str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def check_contract(outcome: Outcome, before: dict[str, str], inputs: Path, out: Path, allowed):
    """The promise of docs/errors.md for one run."""
    assert outcome.status in (0, 1, 2), (outcome.status, outcome.stderr)
    assert "Traceback" not in outcome.stderr, outcome.stderr
    if outcome.status == 2:
        lines = outcome.stderr.splitlines()
        assert len(lines) == 1, outcome.stderr
        assert lines[0].startswith(f"{PROG}: "), outcome.stderr
        left = sorted(p.name for p in out.iterdir())
        assert left == [], f"exit 2 left {left}"
    else:
        left = {p.name for p in out.iterdir()}
        assert left <= set(allowed), f"stray files: {sorted(left - set(allowed))}"
    assert _digests(inputs) == before, "an input file changed"


@contextlib.contextmanager
def workspace() -> Iterator[tuple[Path, Path]]:
    """(inputs, out): two fresh directories, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="bad-input-") as root:
        inputs, out = Path(root) / "in", Path(root) / "out"
        inputs.mkdir()
        out.mkdir()
        yield inputs, out


# ---- mutations ---------------------------------------------------------------------------------


def mutate_json(data: st.DataObject, document: Any) -> Any:
    """A copy of `document` with one value replaced, one key or item removed, or one list
    item duplicated, somewhere along a random path."""
    document = copy.deepcopy(document)
    holder, key = None, None
    node = document
    while isinstance(node, dict | list) and node and data.draw(st.integers(0, 4), "depth") > 0:
        keys = sorted(node) if isinstance(node, dict) else list(range(len(node)))
        key = data.draw(st.sampled_from(keys), "key")
        holder, node = node, node[key]
    if holder is None:
        return data.draw(ODD_VALUES, "top")
    action = data.draw(st.sampled_from(["replace", "remove", "duplicate"]), "action")
    if action == "remove":
        del holder[key]
    elif action == "duplicate" and isinstance(holder, list):
        holder.insert(key, copy.deepcopy(holder[key]))
    else:
        holder[key] = data.draw(ODD_VALUES, "value")
    return document


def mutate_bytes(data: st.DataObject, raw: bytes) -> bytes:
    """The bytes truncated, prefixed with a BOM, or with a garbage run spliced in."""
    action = data.draw(st.sampled_from(["truncate", "bom", "garbage", "empty"]), "bytes")
    if action == "empty":
        return b""
    if action == "bom":
        return b"\xef\xbb\xbf" + raw
    at = data.draw(st.integers(0, max(len(raw) - 1, 0)), "at")
    if action == "truncate":
        return raw[:at]
    return raw[:at] + data.draw(st.binary(min_size=1, max_size=8), "garbage") + raw[at:]


def bad_document(data: st.DataObject, document: Any) -> bytes:
    """A malformed version of `document`, as file bytes: mostly well-formed JSON of the
    wrong shape, sometimes broken bytes."""
    if data.draw(st.integers(0, 4), "kind") == 0:
        return mutate_bytes(data, files.dumps(document))
    return json.dumps(mutate_json(data, document), indent=2).encode()


# ---- valid inputs to start from --------------------------------------------------------------


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> dict[str, Any]:
    """A small valid cache, its mappings and two workflows (UI and API) that use them."""
    root = tmp_path_factory.mktemp("good")
    with _env(PINNED):
        cache = synth.generate(4, seed=3)
        files.write_atomic(root / "cache.json", files.dumps(cache))
        build_mappings(MappingsOptions(cache=root / "cache.json", output=root / "m.json"))
    mappings = json.loads((root / "m.json").read_text())
    types = sorted({key.split("::")[0] for key in mappings["mappings"]})[:3]
    ui = {
        "nodes": [
            {"id": i, "type": name, "inputs": [], "properties": {}}
            for i, name in enumerate([*types, "KSampler"], start=1)
        ],
        "links": [],
    }
    api = {str(i): {"class_type": name, "inputs": {}} for i, name in enumerate(types, start=1)}
    return {"cache": cache, "mappings": mappings, "ui": ui, "api": api, "root": root}


def _given_file(inputs: Path, name: str, raw: bytes) -> Path:
    path = inputs / name
    path.write_bytes(raw)
    return path


def _copy(inputs: Path, source: Path) -> Path:
    target = inputs / source.name
    shutil.copy(source, target)
    return target


# ---- the properties ----------------------------------------------------------------------------

MAPPINGS_OUT = ("m.json", "m.json.index")


@FUZZ
@given(data=st.data())
def test_mappings_on_a_malformed_cache(good, data) -> None:
    with workspace() as (inputs, out):
        cache = _given_file(inputs, "cache.json", bad_document(data, good["cache"]))
        before = _digests(inputs)
        outcome = run("mappings", "--cache", str(cache), "--output", str(out / "m.json"))
        check_contract(outcome, before, inputs, out, MAPPINGS_OUT)


@FUZZ
@given(data=st.data())
def test_mappings_on_a_malformed_input_mappings(good, data) -> None:
    with workspace() as (inputs, out):
        cache = _copy(inputs, good["root"] / "cache.json")
        previous = _given_file(inputs, "old.json", bad_document(data, good["mappings"]))
        before = _digests(inputs)
        outcome = run(
            "mappings",
            "--cache",
            str(cache),
            "--input",
            str(previous),
            "--output",
            str(out / "m.json"),
        )
        check_contract(outcome, before, inputs, out, MAPPINGS_OUT)


@FUZZ
@given(data=st.data())
def test_cache_on_a_malformed_input_cache(good, data) -> None:
    with workspace() as (inputs, out):
        cache = _given_file(inputs, "cache.json", bad_document(data, good["cache"]))
        before = _digests(inputs)
        outcome = run(
            "cache",
            "--input",
            str(cache),
            "--output",
            str(out / "c.json"),
            "--no-nodes",
            "--no-versions",
            "--no-metadata",
            "--no-progress",
        )
        check_contract(outcome, before, inputs, out, ("c.json",))


@FUZZ
@given(data=st.data(), api=st.booleans())
def test_resolve_on_a_malformed_workflow(good, data, api) -> None:
    with workspace() as (inputs, out):
        mappings = _copy(inputs, good["root"] / "m.json")
        workflow = _given_file(inputs, "w.json", bad_document(data, good["api" if api else "ui"]))
        before = _digests(inputs)
        outcome = run("resolve", str(workflow), "--mappings", str(mappings), "--json")
        check_contract(outcome, before, inputs, out, ())
        if outcome.status in (0, 1):
            json.loads(outcome.stdout)  # --json is JSON whatever the workflow held


@FUZZ
@given(data=st.data())
def test_resolve_on_a_malformed_mappings_file(good, data) -> None:
    with workspace() as (inputs, out):
        mappings = _given_file(inputs, "m.json", bad_document(data, good["mappings"]))
        workflow = _given_file(inputs, "w.json", files.dumps(good["ui"]))
        before = _digests(inputs)
        outcome = run("resolve", str(workflow), "--mappings", str(mappings))
        check_contract(outcome, before, inputs, out, ())


@FUZZ
@given(data=st.data(), which=st.sampled_from(["manifest.json", "phase1-nodes.json"]))
def test_cache_replaying_a_malformed_cassette_set(data, which) -> None:
    sample = bundled_cassettes("sample")
    with workspace() as (inputs, out):
        cassettes = inputs / "kas"
        cassettes.mkdir()
        for name in ("manifest.json", "phase1-nodes.json"):
            shutil.copy(sample / name, cassettes / name)
        target = cassettes / which
        target.write_bytes(bad_document(data, json.loads(target.read_bytes())))
        before = _digests(inputs)
        outcome = run(
            "cache",
            "--cassette-dir",
            str(cassettes),
            "--output",
            str(out / "c.json"),
            "--no-versions",
            "--no-metadata",
            "--no-progress",
        )
        check_contract(outcome, before, inputs, out, ("c.json",))


NOTEBOOK_PARAMETERS = st.sampled_from(
    ["concurrency", "max_versions", "nodes_per_page", "pages", "record_mode", "output_dir"]
)
NOT_A_VALUE = st.sampled_from(["ten", "-5", "2.5", "[1, 2]", "{'a': 1}", "None", "__import__"])


@settings(max_examples=max(3, EXAMPLES // 3), deadline=None, derandomize=True, database=None)
@given(name=st.one_of(NOTEBOOK_PARAMETERS, st.text(min_size=1, max_size=12)), value=NOT_A_VALUE)
def test_notebook_parameters_that_cannot_be_used(name, value) -> None:
    pytest.importorskip("nbclient", reason="the notebooks extra is not installed")
    with workspace() as (inputs, out):
        before = _digests(inputs)
        outcome = run(
            "notebook", "run", "01_nodes", "--output", str(out / "01.ipynb"), "-p", name, value
        )
        # A value that happens to be valid runs the notebook: the contract holds either way.
        check_contract(outcome, before, inputs, out, ("01.ipynb", "cache.json", "plots"))


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None)
@given(port=st.one_of(st.integers(max_value=-1), st.integers(min_value=65536)))
def test_serve_refuses_a_port_out_of_range(good, port) -> None:
    with workspace() as (inputs, out):
        cache = _copy(inputs, good["root"] / "cache.json")
        before = _digests(inputs)
        outcome = run("serve", "--cache", str(cache), "--port", str(port))
        assert outcome.status == 2
        check_contract(outcome, before, inputs, out, ())


def test_the_contract_check_can_fail(tmp_path: Path) -> None:
    """The checker itself rejects what the contract forbids."""
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    out.mkdir()
    (inputs / "a.json").write_text("{}")
    before = _digests(inputs)
    with pytest.raises(AssertionError):
        check_contract(Outcome(3, b"", ""), before, inputs, out, ())
    with pytest.raises(AssertionError):
        check_contract(
            Outcome(2, b"", "registry-tools: error: a\nsecond line\n"), before, inputs, out, ()
        )
    with pytest.raises(AssertionError):
        check_contract(
            Outcome(2, b"", "Traceback (most recent call last):\n"), before, inputs, out, ()
        )
    (out / "c.json.journal").write_text("")
    with pytest.raises(AssertionError):
        check_contract(Outcome(2, b"", "registry-tools: error: x\n"), before, inputs, out, ())
    (out / "c.json.journal").unlink()
    (inputs / "a.json").write_text('{"changed": true}')
    with pytest.raises(AssertionError):
        check_contract(Outcome(0, b"", ""), before, inputs, out, ())
