"""Run the notebooks at full size and keep what their key cells show, for learners who cannot wait for them.

    python tools/reference_figures.py                    # every notebook, full size: figures + timings
    python tools/reference_figures.py 03_random_switching
    python tools/reference_figures.py --smoke            # time the notebooks with JEDI_SMOKE=1 (nothing kept)
    python tools/reference_figures.py --times            # the README's time columns, from the manifest

A notebook cell tagged ``full-size:NAME`` (cell metadata ``tags``) has its outputs kept: each figure as
``assets/figures/<notebook>/<NAME>-<k>.png`` and its printed text in ``assets/figures/manifest.json``, which
also records, per notebook, the wall time, the device, torch and the date. In the notebooks, the cell after a
tagged one shows them with ``jedi_core.analysis.full_size.show_full_size``; the README's table of notebook
times is read from the manifest. Each notebook runs in a fresh kernel inside ``notebooks/`` (as a learner
runs it), with its runs in a temporary folder, so a training notebook starts from scratch and is timed whole.
Time on an idle machine: anything running beside it slows it and the record would say nothing. Each record
keeps the 1-minute load average when its notebook started; after the first notebook it includes the previous
notebook's own run (a 1-minute average decays over minutes), so about the number of cores means idle. It also
keeps the commit the notebook ran at and, per tagged cell, a hash of the cell's source: a test fails when a
tagged cell has changed since its outputs were kept.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import hashlib
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from unittest import mock

import nbformat

from jedi_core.analysis.full_size import MANIFEST, TAG_PREFIX, format_duration
from jedi_core.training.run_dir import source_commit

ROOT = Path(__file__).resolve().parents[1]

NOTEBOOKS = ROOT / "notebooks"


def tagged_name(cell) -> str | None:
    """NAME of a cell tagged ``full-size:NAME``, else None."""
    for tag in cell.get("metadata", {}).get("tags", []):
        if tag.startswith(TAG_PREFIX):
            return tag[len(TAG_PREFIX):]
    return None


def source_sha256(cell) -> str:
    """The hash of a cell's source, kept with its outputs to tell when the cell has changed since."""
    return hashlib.sha256(cell.source.encode()).hexdigest()


def kept_outputs(notebook) -> dict[str, dict]:
    """Per tagged cell of an executed notebook: its printed text and its PNG figures (base64, in order)."""
    kept = {}
    for cell in notebook.cells:
        name = tagged_name(cell)
        if name is None:
            continue
        if name in kept:
            raise ValueError(f"two cells are tagged {TAG_PREFIX}{name}: each name is kept once")
        text, images = [], []
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stdout":
                text.append(output["text"])
            elif "image/png" in output.get("data", {}):
                images.append(output["data"]["image/png"])
        if not text and not images:
            raise ValueError(f"the cell tagged {TAG_PREFIX}{name} showed nothing to keep")
        kept[name] = {"text": "".join(text).rstrip("\n"), "images": images,
                      "source_sha256": source_sha256(cell)}
    return kept


def device_description() -> str:
    """The CPU (or GPU) the notebooks ran on, in words, with torch's version."""
    import torch

    if torch.cuda.is_available():
        chip = torch.cuda.get_device_name(0)
    else:
        chip = platform.processor() or platform.machine()
        cpuinfo = Path("/proc/cpuinfo")
        if cpuinfo.exists():
            models = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                      if line.startswith("model name")]
            chip = models[0] if models else chip
        chip = f"{chip}, {os.cpu_count()} cores"
    return f"{chip}, torch {torch.__version__}"


def execute(path: Path, smoke: bool, timeout: int | None) -> tuple[object, float]:
    """Run one notebook in a fresh kernel in its folder, at full or smoke size: (the notebook, seconds)."""
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory(prefix="jedi_runs_") as runs, \
            mock.patch.dict(os.environ, {"JEDI_SMOKE": "1" if smoke else "0", "JEDI_RUNS": runs,
                                         "JEDI_SOLUTIONS": "1"}):
        # The kernel inherits this environment; JEDI_RUNS: a training notebook starts from scratch;
        # JEDI_SOLUTIONS: the "your turn" cells run the reference lines (notebooks/solutions.py).
        start = time.perf_counter()
        NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
        seconds = time.perf_counter() - start
    return notebook, seconds


def keep(stem: str, kept: dict[str, dict], folder: Path) -> dict[str, dict]:
    """Write the figures of one notebook as PNG files (replacing its old ones); the manifest's entries."""
    images_dir = folder / stem
    images_dir.mkdir(parents=True, exist_ok=True)
    for old in images_dir.glob("*.png"):
        old.unlink()
    entries = {}
    for name, outputs in kept.items():
        files = []
        for k, data in enumerate(outputs["images"], start=1):
            image = images_dir / f"{name}-{k}.png"
            image.write_bytes(base64.b64decode(data))
            files.append(image.relative_to(folder).as_posix())
        entries[name] = {"text": outputs["text"], "images": files, "source_sha256": outputs["source_sha256"]}
    return entries


def update_manifest(folder: Path, stem: str, record: dict, smoke: bool) -> None:
    """Merge one notebook's record into the manifest (replaced whole: an interrupted run leaves it intact)."""
    path = folder / MANIFEST
    manifest = json.loads(path.read_text()) if path.exists() else {"notebooks": {}}
    entry = manifest["notebooks"].setdefault(stem, {})
    if smoke:
        entry["smoke"] = record
    else:
        entry.update(record)
    manifest["command"] = "python tools/reference_figures.py"
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    partial.replace(path)


def times_table(manifest: dict) -> str:
    """The notebooks' CPU times at full size and with JEDI_SMOKE=1, one markdown row each."""
    rows = ["| notebook | full size | `JEDI_SMOKE=1` | device |", "|---|---|---|---|"]
    for stem, record in sorted(manifest["notebooks"].items()):
        smoke = format_duration(record["smoke"]["seconds"]) if "smoke" in record else "not measured"
        rows.append(f"| `{stem}` | {format_duration(record['seconds'])} | {smoke} | {record['device']} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*",
                        help="notebook names, e.g. 03_random_switching (default: all)")
    parser.add_argument("--smoke", action="store_true",
                        help="time the notebooks with JEDI_SMOKE=1; keep nothing")
    parser.add_argument("--out", type=Path, default=ROOT / "assets" / "figures", help="where figures go")
    parser.add_argument("--times", action="store_true",
                        help="print the manifest's times as a table; run nothing")
    parser.add_argument("--timeout", type=int, default=None,
                        help="seconds one cell may take (default: no limit)")
    args = parser.parse_args(argv)
    if args.times:
        print(times_table(json.loads((args.out / MANIFEST).read_text())))
        return

    available = {path.stem: path for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))}
    unknown = [name for name in args.notebooks if name.removesuffix(".ipynb") not in available]
    if unknown:
        parser.error(f"no such notebook {unknown}; available: {sorted(available)}")
    chosen = [name.removesuffix(".ipynb") for name in args.notebooks] or list(available)

    args.out.mkdir(parents=True, exist_ok=True)
    for stem in chosen:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"{stem}: running {'with JEDI_SMOKE=1' if args.smoke else 'at full size'} "
              f"(load average {load:.2f})", flush=True)
        notebook, seconds = execute(available[stem], args.smoke, args.timeout)
        record = {"seconds": round(seconds, 1), "device": device_description(),
                  "date": datetime.date.today().isoformat(), "load_average_at_start": round(load, 2),
                  "commit": source_commit()}
        if not args.smoke:
            record["outputs"] = keep(stem, kept_outputs(notebook), args.out)
        update_manifest(args.out, stem, record, args.smoke)
        print(f"{stem}: {seconds:.0f} s", flush=True)


if __name__ == "__main__":
    main()
