"""What a notebook shows at full size, for learners who run it in smoke mode or not at all.

The notebooks are committed without outputs, and at full size some take many minutes on a CPU. So each
notebook's key cells carry a tag, ``full-size:NAME``, and ``tools/reference_figures.py`` runs the notebooks
at full size and keeps what those cells showed (their figures as PNG files, their printed text) under
``assets/figures/``, with a manifest saying how, where and how long. In the notebook, the cell after a tagged
one calls :func:`show_full_size` to put the kept outputs beside the learner's own.

With ``JEDI_SMOKE=1`` the models are trained for seconds, and a smoke figure can show the opposite of what the
text describes (a denoiser that has not learnt, errors that have not compounded). :func:`show_full_size` then
says so above the reference, in a banner that cannot be missed.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path

from jedi_core.analysis.colab import repository_root

TAG_PREFIX = "full-size:"
MANIFEST = "manifest.json"
SMOKE_BANNER = ("JEDI_SMOKE=1: the output above comes from tiny models trained for seconds, and may not show "
                "what the text describes. Below is what this cell shows at full size.")


def format_duration(seconds: float) -> str:
    """A run time as the notebooks and the README write it: seconds below 90 s, else minutes (one decimal)."""
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def figures_dir(folder: str | Path | None = None) -> Path:
    """``folder``, or else ``assets/figures`` of the checkout ``jedi_core`` was installed from."""
    return Path(folder) if folder is not None else repository_root() / "assets" / "figures"


def load_manifest(folder: str | Path | None = None) -> dict:
    """The manifest ``tools/reference_figures.py`` writes: per notebook, its run and its kept outputs."""
    path = figures_dir(folder) / MANIFEST
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} is missing: make it with "
                                "`python tools/reference_figures.py`") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is damaged ({error}): make it again with "
                         "`python tools/reference_figures.py`") from None


def full_size_record(notebook: str, name: str, folder: str | Path | None = None) -> tuple[dict, dict]:
    """The notebook's run (device, seconds, date) and what its cell tagged ``full-size:NAME`` showed."""
    notebooks = load_manifest(folder)["notebooks"]
    if notebook not in notebooks:
        raise KeyError(f"no full-size outputs for notebook {notebook!r}; kept: {sorted(notebooks)}")
    run = notebooks[notebook]
    if name not in run["outputs"]:
        raise KeyError(f"notebook {notebook!r} has no kept output {name!r}; kept: {sorted(run['outputs'])}")
    return run, run["outputs"][name]


def full_size_displays(notebook: str, name: str, smoke: bool, folder: str | Path | None = None) -> list:
    """The IPython display objects :func:`show_full_size` shows: the banner (smoke only), a caption, then the
    cell's printed text and its figures."""
    from IPython.display import HTML, Image

    run, kept = full_size_record(notebook, name, folder)
    folder = figures_dir(folder)
    shown = []
    if smoke:
        style = "background:#fff3cd;border-left:6px solid #d39e00;padding:6px 10px;margin:6px 0;color:#533f03"
        shown.append(HTML(f'<div style="{style}"><b>Smoke mode.</b> {html.escape(SMOKE_BANNER)}</div>'))
    took = format_duration(run["seconds"])
    shown.append(HTML(f"<p><b>At full size</b> (kept by <code>tools/reference_figures.py</code> on "
                      f"{html.escape(run['device'])}, {took} for the whole notebook, "
                      f"{html.escape(run['date'])}):</p>"))
    if kept.get("text"):
        shown.append(HTML(f"<pre>{html.escape(kept['text'])}</pre>"))
    shown.extend(Image(filename=str(folder / image)) for image in kept["images"])
    return shown


def show_full_size(notebook: str, name: str) -> None:
    """Show what the cell tagged ``full-size:NAME`` of ``notebook`` showed when the notebook ran at full size,
    with a smoke-mode banner when ``JEDI_SMOKE=1``."""
    from IPython.display import display

    smoke = os.environ.get("JEDI_SMOKE", "0") == "1"
    try:
        shown = full_size_displays(notebook, name, smoke)
    except (FileNotFoundError, KeyError) as missing:
        # Not kept yet (a new cell, or the first full-size run, which is running now): say so, do not stop.
        print(f"No full-size output kept for this cell: {missing}. Make it with "
              f"`python tools/reference_figures.py {notebook}`.")
        return
    for each in shown:
        display(each)
