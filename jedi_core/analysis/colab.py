"""What the notebooks need to run the same way on Colab and locally.

Colab's disk is wiped when its runtime disconnects ("any files you create ... exist only for the duration of
your runtime session", Colab FAQ). A notebook that trains for hours must therefore keep its run folder on
Google Drive there; training resumes from the folder's checkpoint when the cell is run again. Locally, run
folders go to ``$JEDI_RUNS`` or ``runs/``.

The repository URL lives in one place, ``pyproject.toml``'s ``[project.urls]``; the notebooks' "Open in Colab"
badges and clone cells are checked against it (``tests/test_notebooks.py``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DRIVE_MOUNT = Path("/content/drive")
DRIVE_FOLDER = "jedi_runs"


def in_colab() -> bool:
    """True inside a Google Colab kernel."""
    return "google.colab" in sys.modules


def runs_dir(local: str | Path = "runs", drive_mount: str | Path = DRIVE_MOUNT) -> Path:
    """The folder notebooks keep run folders in, created if needed.

    On Colab: ``MyDrive/jedi_runs`` on Google Drive (mounted on first use; Colab asks for permission once),
    so a disconnect loses nothing. Elsewhere: ``$JEDI_RUNS`` if set, else ``local``.
    """
    if in_colab():
        drive_mount = Path(drive_mount)
        if not (drive_mount / "MyDrive").is_dir():
            from google.colab import drive  # only importable on Colab

            drive.mount(str(drive_mount))
        path = drive_mount / "MyDrive" / DRIVE_FOLDER
    else:
        path = Path(os.environ.get("JEDI_RUNS", local))
    path.mkdir(parents=True, exist_ok=True)
    return path


def repository_root() -> Path:
    """The checkout ``jedi_core`` was installed from (editable installs and Colab clones), for ``assets/``."""
    root = Path(__file__).resolve().parents[2]  # jedi_core/analysis/colab.py -> the repository
    if not (root / "assets").is_dir():
        raise FileNotFoundError(f"no assets/ folder beside the jedi_core package (looked in {root}): install "
                                "jedi from a clone of its repository with `pip install -e .`")
    return root
