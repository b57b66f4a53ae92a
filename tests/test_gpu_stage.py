"""tools/gpu_stage.py's decisions on the GPU machine, made here on a staged directory of real (tiny) wheels that pip
installs: a package the image has at the lock's version is left alone, a pure-Python direct dependency at another
version is replaced, the image's compiled builds and the indirect dependencies it has are kept, a package neither
the image nor the stage has fails the install; the GGUF parts reassemble in numeric order, only to their sha256."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import zipfile
from pathlib import Path

import pytest

from helpers import REPO


@pytest.fixture
def stage_tool(tmp_path, monkeypatch):
    """tools/gpu_stage.py with its stage, site and GGUF directories under tmp_path."""
    monkeypatch.syspath_prepend(REPO / "tools")  # as when it runs as a script: its sibling dependency_names
    spec = importlib.util.spec_from_file_location("gpu_stage", REPO / "tools" / "gpu_stage.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    for attr in ("STAGE", "SITE", "PARTS"):
        monkeypatch.setattr(tool, attr, tmp_path / attr.lower())
    (tmp_path / "stage" / "wheels").mkdir(parents=True)
    (tmp_path / "parts").mkdir()
    return tool


def make_wheel(directory: Path, name: str, version: str, purelib: bool = True) -> Path:
    """A minimal installable wheel whose module records its version."""
    path = directory / f"{name}-{version}-py3-none-any.whl"
    dist = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr(f"{name}/__init__.py", f"VERSION = {version!r}\n")
        wheel.writestr(f"{dist}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        wheel.writestr(
            f"{dist}/WHEEL",
            f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: {str(purelib).lower()}\nTag: py3-none-any\n",
        )
        wheel.writestr(f"{dist}/RECORD", "")
    return path


def stage(tool, monkeypatch, capsys, lock: dict, image: dict, wheels: dict, direct: set) -> list[str]:
    """Run install() with `lock` as wanted.json, `image` as the installed versions, `wheels` {name: purelib} staged
    at the lock's version; its printed lines."""
    for name, purelib in wheels.items():
        make_wheel(tool.STAGE / "wheels", name, lock[name], purelib)
    (tool.STAGE / "wanted.json").write_text(json.dumps(lock))
    monkeypatch.setattr(tool, "DIRECT", direct)
    monkeypatch.setattr(tool, "installed_version", image.get)
    tool.install()
    return capsys.readouterr().out.splitlines()


def test_install_replaces_only_pure_python_direct_dependencies(stage_tool, monkeypatch, capsys):
    lock = {"same": "1.0", "directpure": "2.0", "directcompiled": "2.0", "indirect": "2.0", "newpkg": "3.0"}
    image = {"same": "1.0", "directpure": "1.0", "directcompiled": "1.0", "indirect": "1.0", "torch": "9.9"}
    wheels = {"directpure": True, "directcompiled": False, "indirect": True, "newpkg": True}
    lines = stage(stage_tool, monkeypatch, capsys, lock, image, wheels, direct={"directpure", "directcompiled"})
    assert lines[:5] == [
        "ok      same==1.0",
        "staged  directpure==2.0 (image has 1.0)",
        "image   directcompiled==1.0 (lock 2.0; the image's own, kept)",
        "image   indirect==1.0 (lock 2.0; the image's own, kept)",
        "staged  newpkg==3.0",
    ]
    assert "image   torch==9.9 (the GPU image's, by design)" in lines
    site = stage_tool.SITE
    assert sorted(p.name for p in site.iterdir() if not p.name.endswith(".dist-info")) == [
        ".done",
        "directpure",
        "newpkg",
    ]
    assert (site / "directpure" / "__init__.py").read_text() == "VERSION = '2.0'\n"


def test_install_fails_naming_a_package_it_cannot_provide(stage_tool, monkeypatch, capsys):
    with pytest.raises(SystemExit, match="MISSING"):
        stage(stage_tool, monkeypatch, capsys, {"absent": "1.0"}, {}, {}, direct=set())
    assert "MISSING absent==1.0: no wheel staged" in capsys.readouterr().out


def split_gguf(tool, data: bytes, sizes: list[int], digest_of: bytes) -> None:
    """Parts part-0..part-N of `data`, and the sha256 of `digest_of` as the staged checksum."""
    start = 0
    for i, size in enumerate(sizes):
        (tool.PARTS / f"part-{i}").write_bytes(data[start : start + size])
        start += size
    (tool.STAGE / "gguf.sha256").write_text(hashlib.sha256(digest_of).hexdigest())


def test_gguf_parts_reassemble_in_numeric_order(stage_tool):
    data = bytes(range(256)) * 12
    split_gguf(stage_tool, data, [256] * 12, data)  # part-10 and part-11 sort before part-2 as text
    stage_tool.assemble_gguf()
    assert (stage_tool.PARTS / stage_tool.GGUF_NAME).read_bytes() == data
    assert not list(stage_tool.PARTS.glob("part-*"))


def test_gguf_parts_with_the_wrong_checksum_leave_no_file(stage_tool):
    data = bytes(range(256)) * 3
    split_gguf(stage_tool, data, [256] * 3, b"another file")
    with pytest.raises(SystemExit, match="do not add up"):
        stage_tool.assemble_gguf()
    assert sorted(p.name for p in stage_tool.PARTS.iterdir()) == ["part-0", "part-1", "part-2"]
