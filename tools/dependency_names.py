"""Names of the project's dependencies (and the given extras'), without their version ranges and without torch: what
`make test-latest` installs at the newest release, so that it finds breakage beyond the tested ranges, and what
tools/gpu_stage.py installs at the lock's version on the GPU machine (the project's direct dependencies).

    python3 tools/dependency_names.py triton,eval,test
"""

import re
import sys
import tomllib
from pathlib import Path


def dependency_names(extras: list[str]) -> set[str]:
    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + [r for extra in extras for r in project["optional-dependencies"][extra]]
    return {re.match(r"[A-Za-z0-9_.\-]+", r).group(0) for r in requirements} - {"torch"}


if __name__ == "__main__":
    print(" ".join(sorted(dependency_names(sys.argv[1].split(",") if len(sys.argv) > 1 else []))))
