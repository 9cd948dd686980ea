"""Print pip constraints pinning every direct dependency of nbtui (and the named extras)
to its LOWEST declared version: `python3 .ci/lowest_constraints.py [EXTRA...]`."""

from __future__ import annotations

import re
import sys
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

project = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())["project"]
wanted = list(project["dependencies"])
for extra in sys.argv[1:]:
    wanted += project["optional-dependencies"][extra]
for req in wanted:
    spec, _, marker = req.partition(";")
    m = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*(.*?)\s*", spec)
    if not m or m.group(1) == project["name"]:
        continue
    floor = re.search(r">=\s*([0-9][0-9A-Za-z.]*)", m.group(3))
    if floor:
        print(f"{m.group(1)}=={floor.group(1)}" + (f"; {marker.strip()}" if marker.strip() else ""))
