"""The shared file layer: outputs that must not be replaced, inputs that must not be read,
writes that fail cleanly."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from registry_tools import files
from registry_tools.errors import UserError


def _refused(call, *args, match: str, **kwargs) -> None:
    with pytest.raises(UserError, match=match) as info:
        call(*args, **kwargs)
    assert "\n" not in str(info.value)


def test_a_new_or_regular_output_is_accepted(tmp_path: Path) -> None:
    files.check_output(tmp_path / "new.json")
    (tmp_path / "old.json").write_text("{}")
    files.check_output(tmp_path / "old.json")


@pytest.mark.parametrize("device", ["/dev/null", "/dev/zero"])
def test_a_device_output_is_refused(device: str) -> None:
    _refused(files.check_output, Path(device), match="not a regular file")


def test_a_directory_output_is_refused(tmp_path: Path) -> None:
    _refused(files.check_output, tmp_path, match="is a directory")


def test_a_pipe_output_is_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    _refused(files.check_output, tmp_path / "pipe", match="not a regular file")


def test_an_output_whose_parent_is_a_file_or_missing_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    _refused(files.check_output, tmp_path / "file" / "out.json", match="is not a directory")
    _refused(files.check_output, tmp_path / "nowhere" / "out.json", match="does not exist")


def test_a_name_too_long_is_refused(tmp_path: Path) -> None:
    _refused(files.check_output, tmp_path / ("x" * 300), match="file name too long")
    _refused(files.check_input, tmp_path / ("x" * 300), match="file name too long")


def test_an_output_that_is_an_input_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "in.json"
    source.write_text("{}")
    _refused(files.check_output, source, inputs=[source], match="is the input")
    link = tmp_path / "link.json"
    link.symlink_to(source)
    _refused(files.check_output, link, inputs=[None, source], match="is the input")


def test_an_output_inside_a_protected_directory_is_refused(tmp_path: Path) -> None:
    kept = tmp_path / "cassettes"
    kept.mkdir()
    _refused(files.check_output, kept / "phase1-nodes.json", protected=[kept], match="inside")
    files.check_output(tmp_path / "elsewhere.json", protected=[kept])


def test_a_companion_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "out.json.journal").mkdir()
    _refused(
        files.check_output,
        tmp_path / "out.json",
        companions=[tmp_path / "out.json.journal"],
        match="journal beside it.*is a directory",
    )


def test_inputs_must_be_readable_regular_files(tmp_path: Path) -> None:
    _refused(files.check_input, Path("/dev/zero"), match="not a regular file")
    _refused(files.check_input, tmp_path, match="is a directory")
    _refused(files.check_input, tmp_path / "absent.json", match="no such file")
    _refused(files.read_json, Path("/dev/zero"), "--input", match="not a regular file")
    (tmp_path / "ok.json").write_text('{"a": 1}')
    assert files.read_json(tmp_path / "ok.json", "--input") == {"a": 1}


def test_a_full_disk_leaves_the_old_file_and_no_temporary(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "out.json"
    target.write_bytes(b"old")

    def full(_fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    _refused(files.write_atomic, target, b"new" * 1000, match="No space left on device")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_dash_writes_standard_output(capfdbinary) -> None:
    files.write_output("-", [b"a", b"b\n"])
    assert capfdbinary.readouterr().out == b"ab\n"
    assert files.is_stdio("-") and not files.is_stdio(Path("x")) and not files.is_stdio(None)
