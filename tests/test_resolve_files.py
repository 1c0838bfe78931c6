"""Every file a user has: PNG (tEXt, zTXt, iTXt), WebP (EXIF, XMP), a video's metadata, a
UTF-8 BOM, standard input, several workflows at once; and the clean edges of the command."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from _resolve_fixtures import new_mappings, ui_node, ui_workflow
from PIL import Image, PngImagePlugin

from registry_tools import files
from registry_tools.cli import main
from registry_tools.errors import UserError
from registry_tools.resolve.reading import load_workflow

WORKFLOW = ui_workflow(ui_node(1, "Sharpen", cnr_id="hakuimg"), ui_node(2, "KSampler"))
PROMPT = {"1": {"class_type": "Blur", "inputs": {}}}


@pytest.fixture
def mappings_file(tmp_path: Path) -> Path:
    path = tmp_path / "m.json"
    files.write_atomic(path, files.dumps(new_mappings()))
    return path


def png(path: Path, how: str) -> Path:
    """A PNG as ComfyUI writes it (`tEXt`), or with the workflow compressed (`zTXt`, `iTXt`)."""
    info = PngImagePlugin.PngInfo()
    text = json.dumps(WORKFLOW)
    if how == "tEXt":
        info.add_text("workflow", text)
    elif how == "zTXt":
        info.add_text("workflow", text, zip=True)
    else:
        info.add_itxt("workflow", text, zip=how == "iTXt-zip")
    info.add_text("prompt", json.dumps(PROMPT))
    Image.new("RGB", (4, 4)).save(path, pnginfo=info)
    return path


@pytest.mark.parametrize("how", ["tEXt", "zTXt", "iTXt", "iTXt-zip"])
def test_png_chunks(tmp_path: Path, how: str) -> None:
    path = png(tmp_path / "image.png", how)
    chunk = {"tEXt": b"tEXt", "zTXt": b"zTXt"}.get(how, b"iTXt")
    assert chunk + b"workflow" in path.read_bytes()  # the test writes the chunk it claims
    workflow = load_workflow(path)
    assert workflow.format == "ui" and workflow.source == "workflow metadata"
    assert [n.type for n in workflow.nodes] == ["Sharpen", "KSampler"]
    assert workflow.nodes[0].cnr_id == "hakuimg"


def test_png_with_only_a_prompt_uses_the_api_export(tmp_path: Path) -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", json.dumps(PROMPT))
    Image.new("RGB", (2, 2)).save(tmp_path / "p.png", pnginfo=info)
    workflow = load_workflow(tmp_path / "p.png")
    assert (workflow.format, [n.type for n in workflow.nodes]) == ("api", ["Blur"])


def test_webp_exif_as_comfyui_writes_it(tmp_path: Path) -> None:
    image = Image.new("RGB", (4, 4))
    exif = image.getexif()
    exif[0x0110] = "prompt:" + json.dumps(PROMPT)  # Model
    exif[0x010F] = "workflow:" + json.dumps(WORKFLOW)  # Make
    image.save(tmp_path / "a.webp", exif=exif.tobytes())
    assert b"EXIF" in (tmp_path / "a.webp").read_bytes()
    workflow = load_workflow(tmp_path / "a.webp")
    assert [n.type for n in workflow.nodes] == ["Sharpen", "KSampler"]


def test_webp_xmp(tmp_path: Path) -> None:
    escaped = json.dumps(WORKFLOW).replace("&", "&amp;").replace('"', "&quot;")
    xmp = f'<x:xmpmeta><rdf:Description comfy:workflow="{escaped}"/></x:xmpmeta>'
    Image.new("RGB", (4, 4)).save(tmp_path / "x.webp", xmp=xmp.encode())
    assert [n.type for n in load_workflow(tmp_path / "x.webp").nodes] == ["Sharpen", "KSampler"]


def test_video_metadata_is_found_near_either_end(tmp_path: Path) -> None:
    # an MP4-like file: ftyp box, a large media box, then the metadata (as PyAV writes it)
    body = b"\x00\x00\x00\x18ftypisom" + b"\x00" * 12 + b"\x01\xff{\x02" * 300_000
    meta = b"\x00\x00\x01\x00data\x00\x00\x00\x01\x00\x00\x00\x00" + json.dumps(WORKFLOW).encode()
    (tmp_path / "v.mp4").write_bytes(body + meta + b"\x00" * 64)
    workflow = load_workflow(tmp_path / "v.mp4")
    assert [n.type for n in workflow.nodes] == ["Sharpen", "KSampler"]
    flac = b"fLaC\x00\x00\x00\x22" + b"\x00" * 34 + b"prompt=" + json.dumps(PROMPT).encode()
    (tmp_path / "a.flac").write_bytes(flac)
    assert load_workflow(tmp_path / "a.flac").format == "api"


def test_a_utf8_bom_is_accepted(tmp_path: Path, mappings_file: Path, capsys) -> None:
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(WORKFLOW).encode())
    assert main(["resolve", str(path), "--mappings", str(mappings_file)]) == 0
    assert "hakuimg 1.2.0" in capsys.readouterr().out


def test_standard_input(monkeypatch, mappings_file: Path, capsys) -> None:
    stdin = io.TextIOWrapper(io.BytesIO(json.dumps(PROMPT).encode()))
    monkeypatch.setattr(sys, "stdin", stdin)
    assert main(["resolve", "-", "--mappings", str(mappings_file), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["workflows"] == ["-"] and plan["packages"][0]["package_id"] == "rival-img"


def test_several_workflows_one_plan_each_or_combined(
    tmp_path: Path, mappings_file: Path, capsys
) -> None:
    first = tmp_path / "one.json"
    first.write_text(json.dumps(ui_workflow(ui_node(1, "ApplyInstantID"))))
    second = tmp_path / "two.png"
    info = PngImagePlugin.PngInfo()
    info.add_text("workflow", json.dumps(ui_workflow(ui_node(1, "InstantIDModelLoader"))))
    Image.new("RGB", (2, 2)).save(second, pnginfo=info)
    args = ["resolve", str(first), str(second), "--mappings", str(mappings_file), "--json"]
    assert main(args) == 0
    plans = json.loads(capsys.readouterr().out)["plans"]
    assert [[p["package_id"] for p in plan["packages"]] for plan in plans] == [
        ["instantid-fork"],
        ["comfyui_instantid"],
    ]
    assert main([*args, "--combined"]) == 0
    combined = json.loads(capsys.readouterr().out)
    assert combined["workflows"] == [str(first), str(second)]
    assert [p["package_id"] for p in combined["packages"]] == ["comfyui_instantid"]
    assert main(args[:-1]) == 0
    text = capsys.readouterr().out
    assert text.count("packs to install") == 2 and "read from the file's workflow metadata" in text


def test_output_file_and_its_checks(tmp_path: Path, mappings_file: Path, capsys) -> None:
    workflow = tmp_path / "w.json"
    workflow.write_text(json.dumps(WORKFLOW))
    out = tmp_path / "plan.json"
    assert main(["resolve", str(workflow), "--mappings", str(mappings_file), "--json",
                 "--output", str(out)]) == 0  # fmt: skip
    assert json.loads(out.read_text())["packages"][0]["package_id"] == "hakuimg"
    before = workflow.read_bytes()
    assert main(["resolve", str(workflow), "--mappings", str(mappings_file),
                 "--output", str(workflow)]) == 2  # fmt: skip
    assert workflow.read_bytes() == before
    assert "is the input" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\x00IEND\xaeB`\x82",
            "without an embedded ComfyUI workflow",
        ),
        (b'{"cached_at": "t", "nodes": [{"id": "a"}]}', "carry no 'type'"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\x05tEXtworkflow", "without an embedded"),  # truncated
    ],
)
def test_what_is_not_a_workflow_is_one_line(
    tmp_path: Path, mappings_file: Path, capsys, content: bytes, message: str
) -> None:
    path = tmp_path / "w.bin"
    path.write_bytes(content)
    assert main(["resolve", str(path), "--mappings", str(mappings_file)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


def test_stdin_twice_and_cassette_without_online(mappings_file: Path, capsys) -> None:
    assert main(["resolve", "-", "-", "--mappings", str(mappings_file)]) == 2
    assert "only once" in capsys.readouterr().err
    assert (
        main(["resolve", "x.json", "--cassette", "c.json", "--mappings", str(mappings_file)]) == 2
    )


def test_a_closed_pipe_exits_quietly(tmp_path: Path, mappings_file: Path) -> None:
    """`resolve ... | head -1`: no traceback, no error line."""
    nodes = [ui_node(i, f"Missing{i}") for i in range(3000)]
    workflow = tmp_path / "big.json"
    workflow.write_text(json.dumps(ui_workflow(*nodes)))
    command = (
        f"{sys.executable} -m registry_tools resolve {workflow} --mappings {mappings_file} "
        "--details | head -1"
    )
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120)
    assert done.stdout.count("\n") == 1
    assert done.stderr == ""


def test_zlib_bomb_sized_chunks_are_not_trusted(tmp_path: Path) -> None:
    """A zTXt chunk that is not zlib data is skipped, not a crash."""
    bad = b"workflow\x00\x00" + b"not zlib"
    chunk = (
        len(bad).to_bytes(4, "big") + b"zTXt" + bad + zlib.crc32(b"zTXt" + bad).to_bytes(4, "big")
    )
    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", json.dumps(PROMPT))
    Image.new("RGB", (2, 2)).save(tmp_path / "p.png", pnginfo=info)
    data = (tmp_path / "p.png").read_bytes()
    (tmp_path / "p.png").write_bytes(data[:8] + chunk + data[8:])
    assert load_workflow(tmp_path / "p.png").format == "api"


def test_other_binary_files_are_named_as_such(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    Image.new("RGB", (2, 2)).save(path, format="JPEG")
    with pytest.raises(UserError, match="neither JSON nor an image, video or sound format"):
        load_workflow(path)
