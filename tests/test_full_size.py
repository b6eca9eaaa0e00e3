"""What the notebooks show at full size is kept, complete and shown beside the learner's own output
(jedi_core.analysis.full_size, tools/reference_figures.py)."""

import base64
import hashlib
import importlib.util
import json
import re
from pathlib import Path

import nbformat
import pytest

from jedi_core.analysis import full_size

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
FIGURES = ROOT / "assets" / "figures"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SHOW_CALL = re.compile(r'^show_full_size\("(?P<notebook>[^"]+)", "(?P<name>[^"]+)"\)$')

_spec = importlib.util.spec_from_file_location("reference_figures", ROOT / "tools" / "reference_figures.py")
reference_figures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reference_figures)


def tagged_cells(path: Path) -> list[tuple[int, str]]:
    cells = nbformat.read(path, as_version=4).cells
    return [(index, name) for index, cell in enumerate(cells)
            if (name := reference_figures.tagged_name(cell)) is not None]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_tagged_cell_is_followed_by_the_call_that_shows_its_full_size_output(path):
    cells = nbformat.read(path, as_version=4).cells
    tagged = tagged_cells(path)
    assert tagged, f"{path.name} keeps no full-size output: tag its key figure cell full-size:NAME"
    for index, name in tagged:
        following = cells[index + 1]
        assert following.cell_type == "code"
        assert following.source == f'show_full_size("{path.stem}", "{name}")'
    # and no call shows anything but the cell just before it
    for index, cell in enumerate(cells):
        match = SHOW_CALL.match(cell.source) if cell.cell_type == "code" else None
        if match:
            assert match["notebook"] == path.stem
            assert (index - 1, match["name"]) in tagged


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_committed_outputs_cover_every_tagged_cell_with_real_png_files(path):
    record = full_size.load_manifest()["notebooks"][path.stem]
    assert record["seconds"] > 0 and record["device"] and record["date"]
    assert record["smoke"]["seconds"] > 0  # the README's smoke column
    assert sorted(record["outputs"]) == sorted(name for _, name in tagged_cells(path)), \
        "out of date: run `python tools/reference_figures.py " + path.stem + "`"
    for name, kept in record["outputs"].items():
        assert kept["images"] or kept["text"], name
        for image in kept["images"]:
            assert (FIGURES / image).read_bytes()[:8] == PNG_MAGIC, image
    on_disk = {p.relative_to(FIGURES).as_posix() for p in (FIGURES / path.stem).glob("*.png")}
    assert on_disk == {image for kept in record["outputs"].values() for image in kept["images"]}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_tagged_cell_has_changed_since_its_outputs_were_kept(path):
    """The manifest keeps each tagged cell's source hash and the commit it ran at: a cell edited since shows
    outputs it may no longer make."""
    record = full_size.load_manifest()["notebooks"][path.stem]
    assert record["commit"], "run `python tools/reference_figures.py " + path.stem + "`"
    cells = nbformat.read(path, as_version=4).cells
    for index, name in tagged_cells(path):
        assert record["outputs"][name]["source_sha256"] == reference_figures.source_sha256(cells[index]), (
            f"the cell tagged full-size:{name} changed after its outputs were kept: run "
            f"`python tools/reference_figures.py {path.stem}`")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_readme_gives_the_measured_times_of_every_notebook(path):
    record = full_size.load_manifest()["notebooks"][path.stem]
    lines = (ROOT / "README.md").read_text().splitlines()
    rows = [line for line in lines if line.startswith(f"| `{path.stem}` |")]
    assert len(rows) == 1, f"README.md has no row (or several) for {path.stem} in its notebook table"
    for seconds in (record["seconds"], record["smoke"]["seconds"]):
        assert reference_figures.format_duration(seconds) in rows[0], \
            "run `python tools/reference_figures.py --times` and copy the times into README.md"


def test_durations_read_as_seconds_then_minutes():
    assert [reference_figures.format_duration(s) for s in (4.2, 89.4, 90, 431)] == ["4 s", "89 s", "1.5 min",
                                                                                     "7.2 min"]


def write_manifest(folder: Path, images: int = 2) -> None:
    (folder / "nb").mkdir(parents=True)
    files = []
    for k in range(images):
        (folder / "nb" / f"curve-{k + 1}.png").write_bytes(PNG_MAGIC + bytes(8))
        files.append(f"nb/curve-{k + 1}.png")
    manifest = {"notebooks": {"nb": {"seconds": 90.0, "device": "a CPU", "date": "2026-01-01",
                                     "outputs": {"curve": {"text": "error 0.25 < 0.5", "images": files}}}}}
    (folder / full_size.MANIFEST).write_text(json.dumps(manifest))


def test_in_smoke_mode_a_banner_comes_first_then_the_caption_text_and_figures(tmp_path):
    from IPython.display import HTML, Image

    write_manifest(tmp_path)
    smoke = full_size.full_size_displays("nb", "curve", smoke=True, folder=tmp_path)
    full = full_size.full_size_displays("nb", "curve", smoke=False, folder=tmp_path)
    assert "Smoke mode" in smoke[0].data
    assert [d.data for d in smoke[1:]] == [d.data for d in full]  # the banner is the only difference
    assert "a CPU" in full[0].data and "1.5 min for the whole notebook" in full[0].data
    assert isinstance(full[1], HTML) and "error 0.25 &lt; 0.5" in full[1].data  # the printed text, escaped
    assert [type(d) for d in full[2:]] == [Image, Image]


def test_a_missing_or_damaged_manifest_names_the_file_and_the_command_that_remakes_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="reference_figures.py"):
        full_size.load_manifest(tmp_path)
    (tmp_path / full_size.MANIFEST).write_text("{not json")
    with pytest.raises(ValueError, match=f"{full_size.MANIFEST} is damaged.*reference_figures.py"):
        full_size.load_manifest(tmp_path)


def test_an_unknown_notebook_or_name_lists_what_is_kept(tmp_path):
    write_manifest(tmp_path)
    with pytest.raises(KeyError, match=r"kept: \['nb'\]"):
        full_size.full_size_record("other", "curve", tmp_path)
    with pytest.raises(KeyError, match=r"kept: \['curve'\]"):
        full_size.full_size_record("nb", "loss", tmp_path)


def test_show_full_size_says_what_to_run_when_nothing_is_kept_and_does_not_stop_the_notebook(capsys):
    full_size.show_full_size("99_not_a_notebook", "figure")
    assert "python tools/reference_figures.py 99_not_a_notebook" in capsys.readouterr().out


def cell(source: str, tags: list[str], outputs: list[dict]):
    made = nbformat.v4.new_code_cell(source, metadata={"tags": tags} if tags else {})
    made.outputs = [nbformat.from_dict(output) for output in outputs]
    return made


def test_kept_outputs_takes_printed_text_and_png_figures_of_tagged_cells_only():
    png = base64.b64encode(PNG_MAGIC).decode()
    notebook = nbformat.v4.new_notebook(cells=[
        cell("x", [], [{"output_type": "stream", "name": "stdout", "text": "untagged"}]),
        cell("y", ["other", "full-size:curve"], [
            {"output_type": "stream", "name": "stdout", "text": "line 1\n"},
            {"output_type": "stream", "name": "stderr", "text": "a warning"},
            {"output_type": "display_data", "data": {"image/png": png, "text/plain": "<Figure>"},
             "metadata": {}},
            {"output_type": "stream", "name": "stdout", "text": "line 2\n"}]),
    ])
    assert reference_figures.kept_outputs(notebook) == {"curve": {
        "text": "line 1\nline 2", "images": [png], "source_sha256": hashlib.sha256(b"y").hexdigest()}}

    printed = {"output_type": "stream", "name": "stdout", "text": "a"}
    notebook.cells.append(cell("z", ["full-size:curve"], [printed]))
    with pytest.raises(ValueError, match="two cells are tagged full-size:curve"):
        reference_figures.kept_outputs(notebook)
    notebook.cells[-1] = cell("z", ["full-size:empty"], [])
    with pytest.raises(ValueError, match="full-size:empty showed nothing"):
        reference_figures.kept_outputs(notebook)


def test_the_tool_runs_a_notebook_in_a_fresh_kernel_at_the_size_asked_and_keeps_its_outputs(tmp_path,
                                                                                          monkeypatch):
    monkeypatch.setenv("JEDI_SMOKE", "1")  # as under CI: the full-size run must not inherit it
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    source = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import os, pathlib\n"
                                  "print(os.environ['JEDI_SMOKE'], pathlib.Path.cwd().name, "
                                  "'jedi_runs_' in os.environ['JEDI_RUNS'])",
                                  metadata={"tags": ["full-size:where"]}),
        nbformat.v4.new_code_cell("import matplotlib\nmatplotlib.use('agg')\n"
                                  "import matplotlib.pyplot as plt\n"
                                  "from IPython.display import Image, display\nplt.plot([0, 1])\n"
                                  "plt.savefig('f.png')\ndisplay(Image(filename='f.png'))",
                                  metadata={"tags": ["full-size:plot"]}),
    ])
    path = notebooks / "01_tiny.ipynb"
    nbformat.write(source, path)

    ran, seconds = reference_figures.execute(path, smoke=False, timeout=120)
    entries = reference_figures.keep(path.stem, reference_figures.kept_outputs(ran), tmp_path / "figures")
    assert entries["where"] == {"text": "0 notebooks True", "images": [],
                                "source_sha256": reference_figures.source_sha256(source.cells[0])}
    assert entries["plot"]["images"] == ["01_tiny/plot-1.png"] and seconds > 0
    assert (tmp_path / "figures" / "01_tiny" / "plot-1.png").read_bytes()[:8] == PNG_MAGIC
    reference_figures.update_manifest(tmp_path / "figures", path.stem,
                                      {"seconds": seconds, "outputs": entries}, smoke=False)

    ran, seconds = reference_figures.execute(path, smoke=True, timeout=120)
    assert reference_figures.kept_outputs(ran)["where"]["text"] == "1 notebooks True"
    reference_figures.update_manifest(tmp_path / "figures", path.stem, {"seconds": seconds}, smoke=True)
    record = full_size.load_manifest(tmp_path / "figures")["notebooks"]["01_tiny"]
    assert record["outputs"] == entries and record["smoke"] == {"seconds": seconds}  # the smoke run kept both
