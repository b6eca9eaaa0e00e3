"""Write (or refresh) every notebook's "Open in Colab" badge and its Colab set-up cell.

The repository URL comes from one place, ``pyproject.toml``'s ``[project.urls] Repository``; change it there
and run ``python tools/notebook_headers.py``. ``tests/test_notebooks.py`` fails when a notebook is out of
date.

The set-up cell does nothing outside Colab (so nbval and local Jupyter skip it). On Colab it clones the
repository, installs it without pinning torch (Colab's CUDA build stays), moves into ``notebooks/`` so
relative paths work as they do locally, and turns on Colab's custom widget manager, without which Colab does
not draw the ipywidgets 8 that jedi installs (the static figures beside each widget remain). It is plain
Python, not shell magics, so that a failed clone or install stops the notebook right there with git's or
pip's own message (a magic's failure only prints, and the first error would be a ``ModuleNotFoundError``
cells later).
"""

from __future__ import annotations

import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
BADGE_MARK = "colab-badge.svg"
SETUP_MARK = "IN_COLAB = "


def repository_url() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"].rstrip("/")


def badge(notebook: Path, url: str = "", branch: str = "main") -> str:
    slug = (url or repository_url()).removeprefix("https://github.com/")
    return (f"[![Open In Colab](https://colab.research.google.com/assets/{BADGE_MARK})]"
            f"(https://colab.research.google.com/github/{slug}/blob/{branch}/notebooks/{notebook.name})")


def setup_cell(url: str = "") -> str:
    url = url or repository_url()
    return f'''\
# On Colab: fetch jedi and install it (Colab's own CUDA torch is kept: nothing here pins torch).
# Anywhere else this cell does nothing; install with the README's command instead.
import os
import subprocess
import sys

{SETUP_MARK}"google.colab" in sys.modules
if IN_COLAB:
    def run(command: list[str], what: str) -> None:
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:  # stop here, with the tool's own words, not cells later
            message = f"{{what}} failed (exit status {{done.returncode}}):\\n{{done.stderr[-3000:]}}"
            raise RuntimeError(message)

    repository = "{url}.git"
    if not os.path.isdir("/content/jedi"):
        run(["git", "clone", "-q", "--depth", "1", repository, "/content/jedi"], f"cloning {{repository}}")
    run([sys.executable, "-m", "pip", "install", "-q", "-e", "/content/jedi"], "pip install -e /content/jedi")
    sys.path.insert(0, "/content/jedi")  # the editable install is only seen by new kernels
    from google.colab import output

    output.enable_custom_widget_manager()  # Colab draws ipywidgets 8 (players, sliders, the dream) only so
    os.chdir("/content/jedi/notebooks")
    import jedi_core  # noqa: F401  (the next cells import it: fail here if it cannot be)'''


def refresh(notebook: Path) -> bool:
    """Insert or update the badge (under the title) and the set-up cell (right after the title cell)."""
    import nbformat

    data = nbformat.read(notebook, as_version=4)
    cells = data.cells
    if not cells or cells[0].cell_type != "markdown" or not cells[0].source.startswith("# "):
        raise ValueError(f"{notebook.name}: the first cell must be the markdown title")
    lines = [line for line in cells[0].source.split("\n") if BADGE_MARK not in line]
    rest = "\n".join(lines[1:]).lstrip("\n")
    cells[0].source = f"{lines[0]}\n\n{badge(notebook)}\n\n{rest}".rstrip("\n")
    if len(cells) > 1 and cells[1].cell_type == "code" and SETUP_MARK in cells[1].source:
        cells[1].source = setup_cell()
    else:
        cells.insert(1, nbformat.v4.new_code_cell(setup_cell(), id="colab-setup"))
    text = nbformat.writes(data) + "\n"
    changed = text != notebook.read_text()
    if changed:
        notebook.write_text(text)
    return changed


if __name__ == "__main__":
    paths = [Path(p) for p in sys.argv[1:]] or sorted((ROOT / "notebooks").glob("*.ipynb"))
    for path in paths:
        print(("updated " if refresh(path) else "up to date ") + path.name)
