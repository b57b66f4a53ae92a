"""A non-editable install works from the wheel alone: the wheel carries the Hydra configs (and everything else the
package reads at run time), and the installed package finds them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from helpers import REPO

PACKAGE = REPO / "src" / "hybrid_distill"


def build_wheel(tmp_path: Path) -> Path:
    """`pip wheel` of a copy of the project (so no build/ or egg-info lands in the checkout)."""
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, project / name)
    shutil.copytree(PACKAGE, project / "src" / "hybrid_distill", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(project),
        ],
        check=True,
    )
    (wheel,) = (tmp_path / "dist").glob("hybrid_distill-*.whl")
    return wheel


def test_wheel_carries_the_configs_and_the_installed_package_finds_them(tmp_path):
    wheel = build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = {str(p.relative_to(PACKAGE.parent)) for p in (PACKAGE / "conf").rglob("*.yaml")}
    assert configs and configs <= names, sorted(configs - names)
    kernels = {str(p.relative_to(PACKAGE.parent)) for p in (PACKAGE / "kernels").glob("*.py")}
    assert kernels and kernels <= names, sorted(kernels - names)  # the own Triton kernels ship in the wheel
    tasks = {str(p.relative_to(PACKAGE.parent)) for p in (PACKAGE / "eval" / "lm_eval_tasks").glob("*.*")}
    assert {
        "hybrid_distill/eval/lm_eval_tasks/hd_recall_mc.yaml",
        "hybrid_distill/eval/lm_eval_tasks/hd_data.py",
    } <= tasks
    assert tasks <= names, sorted(tasks - names)  # the lm-eval tasks with their documents
    # the unpacked wheel alone on the path (as site-packages would hold it), started outside the repository
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("HD_CONFIG_DIR", None)
    probe = (
        "import hybrid_distill.paths as p, pathlib; d = pathlib.Path(p.config_dir()); "
        "print(d); assert (d / 'train.yaml').is_file() and (d / 'eval.yaml').is_file(); "
        "from hybrid_distill.eval.lm_eval_tasks import TASKS_DIR, TASK_NAMES; "
        "assert len(TASK_NAMES) == 3 and all((TASKS_DIR / f'{t}.jsonl').is_file() for t in TASK_NAMES)"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()).is_relative_to(site)


def test_top_level_conf_is_the_package_conf():
    """`conf` at the repository root, which the README and the layout refer to, is a link to the package's configs."""
    assert (REPO / "conf").resolve() == (PACKAGE / "conf").resolve()
