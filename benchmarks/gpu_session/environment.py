"""What a set of measurements ran on: device, versions, the commit and a hash of the code, the packages the
stages import.

    python benchmarks/gpu_session/environment.py --mode gpu --device cuda --out OUT/environment.json

The commit comes from ``GIT_COMMIT`` if set, else from git, else from a file ``.commit`` in the repository
root. A copied checkout often has none of them: ``source_sha256`` hashes the paths and git blob ids of the
package's and the benchmarks' Python files, and ``unpack.py`` finds the commit whose files give that hash.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import platform
import shutil
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: Third-party modules the stages need; a missing one explains a failed stage at a glance.
MODULES = ("torch", "numpy", "gymnasium", "ale_py", "cv2", "tqdm", "cloudpickle", "matplotlib")


def _git(*args: str) -> str | None:
    if shutil.which("git") is None:
        return None
    try:
        result = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.rstrip("\n") if result.returncode == 0 else None  # status lines start with spaces


def commit() -> dict:
    if os.environ.get("GIT_COMMIT"):
        return {"git_commit": os.environ["GIT_COMMIT"], "commit_source": "GIT_COMMIT"}
    if sha := (_git("rev-parse", "HEAD") or "").strip():
        changed = _git("status", "--porcelain", "--untracked-files=no")
        return {"git_commit": sha, "commit_source": "git", "git_dirty": bool(changed),
                "git_changed_files": changed.splitlines()[:50] if changed else []}
    file = ROOT / ".commit"
    if file.is_file():
        return {"git_commit": file.read_text().split()[0] if file.read_text().split() else None,
                "commit_source": ".commit"}
    return {"git_commit": None, "commit_source": "none (no GIT_COMMIT, no git, no .commit)"}


#: The code a measurement depends on: the package's and the benchmarks' Python files.
SOURCE_DIRS, SOURCE_SUFFIX = ("jedi_core", "benchmarks"), ".py"


def git_blob_id(data: bytes) -> str:
    """The id git gives a file with these bytes (so a checkout without git can still name its files)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def source_digest(blob_ids: dict[str, str]) -> str:
    """One hash of the source files' paths and git blob ids; ``unpack.py`` finds the commit that has it."""
    lines = "".join(f"{path} {blob}\n" for path, blob in sorted(blob_ids.items()))
    return hashlib.sha256(lines.encode()).hexdigest()


def source_sha256() -> str:
    files = [path for folder in SOURCE_DIRS for path in (ROOT / folder).rglob(f"*{SOURCE_SUFFIX}")]
    return source_digest({path.relative_to(ROOT).as_posix(): git_blob_id(path.read_bytes())
                          for path in files})


def module_versions() -> dict:
    found = {}
    for name in MODULES:
        try:
            module = importlib.import_module(name)
            found[name] = {"version": getattr(module, "__version__", "?"),
                           "from": str(Path(getattr(module, "__file__", "") or "?").parent)}
        except Exception as error:  # noqa: BLE001 - a missing module is a finding, not a failure
            found[name] = {"missing": f"{type(error).__name__}: {error}"[:200]}
    return found


def device_facts(device: str) -> dict:
    import torch

    facts = {"torch": torch.__version__, "cuda": torch.version.cuda,
             "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
             "cuda_available": torch.cuda.is_available(), "torch_threads": torch.get_num_threads(),
             "cudnn.benchmark": torch.backends.cudnn.benchmark,
             "cuda.matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32,
             "float32_matmul_precision": torch.get_float32_matmul_precision()}
    if device.startswith("cuda") and torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        facts.update(device=torch.cuda.get_device_name(0), device_count=torch.cuda.device_count(),
                     gpu_memory_mb=properties.total_memory / 2**20,
                     compute_capability=f"{properties.major}.{properties.minor}")
    else:
        facts["device"] = f"CPU: {_cpu_name()}"
    return facts


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def nvidia_smi() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version,clocks.max.sm",
                               "--format=csv"], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError) as error:
        return f"failed: {error}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", default="gpu")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    facts = {"mode": args.mode, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
             "python": platform.python_version(), "platform": platform.platform(),
             "cpu_count": os.cpu_count(),
             **commit(), "source_sha256": source_sha256()}
    try:
        facts.update(device_facts(args.device))
    except Exception as error:  # noqa: BLE001 - record it; the stages will say more
        facts["device_error"] = f"{type(error).__name__}: {error}"
    facts["nvidia_smi"] = nvidia_smi()
    facts["modules"] = module_versions()
    facts["pythonpath"] = os.environ.get("PYTHONPATH", "")
    facts["budgets"] = {key: value for key, value in sorted(os.environ.items())
                        if key.startswith("BUDGET_") or key in ("TOTAL_BUDGET", "STAGES")}
    Path(args.out).write_text(json.dumps(facts, indent=1))
    print(json.dumps({key: facts.get(key) for key in ("device", "torch", "cuda", "git_commit", "nvidia_smi")},
                     indent=1))


if __name__ == "__main__":
    main()
