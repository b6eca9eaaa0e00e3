"""The notebook files are Colab-ready: each has its own badge and set-up cell (tools/notebook_headers.py)."""

import importlib.util
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
_spec = importlib.util.spec_from_file_location("notebook_headers", ROOT / "tools" / "notebook_headers.py")
headers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(headers)


def test_the_six_teaching_notebooks_exist():
    names = {path.stem[:2] for path in NOTEBOOKS}
    assert {"01", "02", "03", "04", "05", "06"} <= names


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_every_notebook_has_its_own_colab_badge_and_set_up_cell(notebook):
    cells = nbformat.read(notebook, as_version=4).cells
    assert headers.badge(notebook) in cells[0].source, "run `python tools/notebook_headers.py`"
    assert f"/blob/main/notebooks/{notebook.name})" in headers.badge(notebook)
    setup = cells[1].source
    assert setup == headers.setup_cell(), "run `python tools/notebook_headers.py`"
    assert f'repository = "{headers.repository_url()}.git"' in setup
    install = [line for line in setup.splitlines() if '"pip", "install"' in line]
    assert install and not any("torch" in line for line in install)  # Colab's CUDA torch must stay


def _run_setup_cell_as_on_colab(monkeypatch, tmp_path, failing: str | None):
    """Execute the set-up cell with ``google.colab`` imported and git and pip faked (``failing`` fails)."""
    import subprocess
    import sys
    import types

    calls = []

    def fake_run(command, **kwargs):
        calls.append(command)
        tool = "git" if command[0] == "git" else "pip"
        if tool == failing:
            return subprocess.CompletedProcess(command, 128, "", f"fatal: {tool} could not do it\n")
        return subprocess.CompletedProcess(command, 0, "", "")

    colab = types.ModuleType("google.colab")
    turn_on = lambda: calls.append(["widget manager"])  # noqa: E731
    colab.output = types.SimpleNamespace(enable_custom_widget_manager=turn_on)
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setattr(subprocess, "run", fake_run)
    monkeypatch.setattr("os.path.isdir", lambda path: False)
    monkeypatch.setattr("os.chdir", lambda path: calls.append(["chdir", path]))
    monkeypatch.setattr(sys, "path", list(sys.path))
    exec(compile(headers.setup_cell(), "colab-setup", "exec"), {})
    return calls


@pytest.mark.parametrize("failing", ["git", "pip"])
def test_on_colab_a_failed_clone_or_install_stops_the_set_up_cell_with_the_tools_message(failing, monkeypatch,
                                                                                       tmp_path):
    message = f"(?s)(cloning|pip install).* failed \\(exit status 128\\).*fatal: {failing} could not do it"
    with pytest.raises(RuntimeError, match=message):
        _run_setup_cell_as_on_colab(monkeypatch, tmp_path, failing)


def test_on_colab_the_set_up_cell_clones_installs_and_moves_into_the_notebooks(monkeypatch, tmp_path):
    calls = _run_setup_cell_as_on_colab(monkeypatch, tmp_path, failing=None)
    assert calls[0][:2] == ["git", "clone"] and calls[0][-2] == f"{headers.repository_url()}.git"
    assert calls[1][1:5] == ["-m", "pip", "install", "-q"]
    assert calls[2] == ["widget manager"]  # else Colab does not draw ipywidgets 8
    assert calls[3] == ["chdir", "/content/jedi/notebooks"]


def test_header_refresh_is_idempotent_and_keeps_the_notebook(tmp_path):
    notebook = tmp_path / "09_example.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# 09 · Example\n\nText."),
                                         nbformat.v4.new_code_cell("x = 1")])
    nbformat.write(nb, notebook)
    assert headers.refresh(notebook) is True
    assert headers.refresh(notebook) is False
    cells = nbformat.read(notebook, as_version=4).cells
    assert [c.cell_type for c in cells] == ["markdown", "code", "code"]
    assert cells[0].source.startswith("# 09 · Example\n\n[![Open In Colab]")
    assert cells[0].source.endswith("Text.")
    assert cells[2].source == "x = 1"


def test_a_your_turn_cell_runs_the_learners_lines_and_the_reference_only_when_asked(monkeypatch):
    """Each "your turn" cell (a function decorated with ``@exercise``) stops with NotImplementedError until
    the learner writes it; with JEDI_SOLUTIONS=1 (set by the tests) the reference of the same name runs, and
    the notebook's next cell checks it against jedi_core (under nbval)."""
    import re

    spec = importlib.util.spec_from_file_location("solutions", ROOT / "notebooks" / "solutions.py")
    solutions = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(solutions)
    stubs = {}
    for notebook in NOTEBOOKS:
        for cell in nbformat.read(notebook, as_version=4).cells:
            if cell.cell_type == "code" and "@exercise" in cell.source:
                name = re.search(r"@exercise\ndef (\w+)\(", cell.source).group(1)
                stubs[name] = cell.source
    assert set(stubs) == set(solutions.REFERENCES)
    assert set(stubs) == {"euler_step", "switch_by_hand", "lambda_returns_by_hand", "hns_by_hand",
                          "learns_by_hand"}
    for name, source in stubs.items():
        assert "raise NotImplementedError" in source  # the learner's to write
        namespace = {"exercise": solutions.exercise}
        code = source.replace("from solutions import exercise\n", "")
        monkeypatch.setenv("JEDI_SOLUTIONS", "0")
        exec(compile(code, name, "exec"), {"torch": __import__("torch"), **namespace}, namespace)
        with pytest.raises(NotImplementedError, match="your turn"):
            namespace[name](*[None] * namespace[name].__code__.co_argcount)
        monkeypatch.setenv("JEDI_SOLUTIONS", "1")
        assert solutions.exercise(namespace[name]) is solutions.REFERENCES[name]
