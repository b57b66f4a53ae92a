"""Names of the project's dependencies (and the given extras'), without their version ranges and without torch: what
`make test-latest` installs at the newest release, so that it finds breakage beyond the tested ranges.

    python3 tools/dependency_names.py triton,eval,test
"""

import re
import sys
import tomllib
from pathlib import Path

project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
extras = sys.argv[1].split(",") if len(sys.argv) > 1 else []
requirements = project["dependencies"] + [r for extra in extras for r in project["optional-dependencies"][extra]]
names = {re.match(r"[A-Za-z0-9_.\-]+", r).group(0) for r in requirements}
print(" ".join(sorted(names - {"torch"})))
