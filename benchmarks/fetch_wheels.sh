#!/usr/bin/env bash
# Download the wheels a GPU machine without a network needs to run benchmarks/gpu_session.sh: gymnasium and
# ale-py (the Atari games) and the small pure-Python packages they or the trainer import that a machine with
# only torch installed lacks. For CPython 3.12 on x86-64 Linux by default (TARGET_PYTHON, TARGET_PLATFORMS).
#
#   bash benchmarks/fetch_wheels.sh [--with-opencv] [DEST]       # DEST default: build/wheels, ignored by git
#
# Then on the GPU machine, with DEST copied along: WHEELS=DEST bash benchmarks/gpu_session.sh (it installs
# them into a temporary folder on PYTHONPATH when gymnasium or ale-py is missing). --with-opencv adds
# opencv-python-headless (gymnasium's Atari preprocessing resizes frames with cv2), about 60 MB: only for a
# machine that lacks cv2 (environment.json lists what each run found).
#
# Versions: the ranges of pyproject.toml's dependencies, or an exact pin of constraints.txt where it has one;
# pip takes the newest wheel within them. --no-deps keeps pip from resolving (and downloading) torch or numpy,
# which the GPU machine has in its own build.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WITH_OPENCV=0
if [[ ${1:-} == --with-opencv ]]; then WITH_OPENCV=1; shift; fi
DEST=${1:-$ROOT/build/wheels}
TARGET_PYTHON=${TARGET_PYTHON:-3.12}
TARGET_PLATFORMS=${TARGET_PLATFORMS:-"manylinux_2_28_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64"}
PYTHON=${PYTHON:-python3}

# gymnasium's own requirements beyond numpy and typing-extensions (torch needs those, so they are there).
PACKAGES=(gymnasium ale-py farama-notifications cloudpickle tqdm)
if ((WITH_OPENCV)); then PACKAGES+=(opencv-python-headless); fi

# One requirement per package: constraints.txt's pin, else pyproject.toml's range, else the name alone.
mapfile -t REQUIREMENTS < <("$PYTHON" - "$ROOT" "${PACKAGES[@]}" <<'EOF'
import re
import sys
from pathlib import Path

root, names = Path(sys.argv[1]), sys.argv[2:]


def key(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(lines):
    found = {}
    for line in lines:
        line = line.split("#", 1)[0].strip().strip("\",")
        match = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^]]*\])?\s*(.*)", line)
        if match and match.group(3)[:1] in ("=", "<", ">", "!", "~", ""):
            found[key(match.group(1))] = match.group(3).replace(" ", "")
    return found


text = (root / "pyproject.toml").read_text()
block = re.search(r"^dependencies\s*=\s*\[(.*?)^\]", text, re.S | re.M)
ranges = requirements(block.group(1).splitlines() if block else [])
constraints = root / "constraints.txt"
pins = requirements(constraints.read_text().splitlines()) if constraints.is_file() else {}
for name in names:
    print(name + (pins.get(key(name)) or ranges.get(key(name)) or ""))
EOF
)

PLATFORM_ARGS=()
for platform in $TARGET_PLATFORMS; do PLATFORM_ARGS+=(--platform "$platform"); done
mkdir -p "$DEST"
echo "downloading for CPython $TARGET_PYTHON ($TARGET_PLATFORMS) into $DEST: ${REQUIREMENTS[*]}"
"$PYTHON" -m pip download --only-binary=:all: --no-deps --python-version "$TARGET_PYTHON" \
  --implementation cp "${PLATFORM_ARGS[@]}" --dest "$DEST" "${REQUIREMENTS[@]}"
ls -l "$DEST"/*.whl
du -sh "$DEST"
