"""Keep a GPU session's results: unpack its archive under benchmarks/results/, named by device and commit.

    python benchmarks/gpu_session/unpack.py RESULTS_DIR      # the folder gpu_session.sh wrote its files to

The commit is the one ``environment.json`` names; where the machine had no git metadata (a copied checkout),
it is the commit of this repository whose Python sources give the recorded ``source_sha256`` (searched
back from HEAD), so no one has to write it down before a session. The results land in
``benchmarks/results/gpu_<device>_<commit>/`` with ``commit.json`` saying how the commit was found; if no
commit matches (the session measured uncommitted changes), the folder is named ``..._uncommitted`` and
``commit.json`` says so.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from environment import ROOT, SOURCE_DIRS, SOURCE_SUFFIX, source_digest  # noqa: E402

ARCHIVE = "gpu_session.tar.gz"


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True).stdout


def commit_source_digest(commit: str) -> str:
    """``environment.source_sha256`` of the files ``commit`` has (from git's tree, without a checkout)."""
    blob_ids = {}
    for line in git("ls-tree", "-r", commit, "--", *SOURCE_DIRS).splitlines():
        meta, path = line.split("\t", 1)
        _, kind, blob = meta.split()
        if kind == "blob" and path.endswith(SOURCE_SUFFIX):
            blob_ids[path] = blob
    return source_digest(blob_ids)


def find_commit(digest: str, search: int = 500) -> str | None:
    """The newest of the last ``search`` commits whose sources give ``digest``."""
    for commit in git("rev-list", f"--max-count={search}", "HEAD").split():
        if commit_source_digest(commit) == digest:
            return commit
    return None


def resolve_commit(env: dict) -> dict:
    if env.get("git_commit"):
        return {"git_commit": env["git_commit"], "how": f"recorded ({env.get('commit_source')})",
                "uncommitted_changes": bool(env.get("git_dirty"))}
    commit = find_commit(env.get("source_sha256", ""))
    if commit is None:
        return {"git_commit": None, "how": "no commit of this repository has the measured sources "
                                           f"(source_sha256 {env.get('source_sha256')})"}
    return {"git_commit": commit, "how": "found by source_sha256", "uncommitted_changes": False}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="the folder gpu_session.sh wrote its files to")
    parser.add_argument("--into", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    archive = args.results / ARCHIVE
    if not archive.is_file():
        print(f"error: {archive} not found; give the folder gpu_session.sh wrote its files to",
              file=sys.stderr)
        return 2
    env = json.loads((args.results / "environment.json").read_text())
    commit = resolve_commit(env)
    device = re.sub(r"[^a-z0-9]+", "_", str(env.get("device", "unknown")).lower()).strip("_")
    name = commit["git_commit"][:7] if commit["git_commit"] else "uncommitted"
    target = args.into / f"gpu_{device}_{name}"
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as packed:
        packed.extractall(target, filter="data")
    (target / "commit.json").write_text(json.dumps(commit, indent=1) + "\n")
    print(f"unpacked into {target}; commit {commit['git_commit'] or 'unknown'} ({commit['how']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
