"""jedi_core.analysis.colab: where runs are kept, locally and on Colab (Google Drive mounted once)."""

import sys
import types
from pathlib import Path

from jedi_core.analysis import colab


def test_runs_dir_is_local_off_colab(tmp_path, monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.setenv("JEDI_RUNS", str(tmp_path / "mine"))
    assert colab.runs_dir() == tmp_path / "mine" and (tmp_path / "mine").is_dir()
    monkeypatch.delenv("JEDI_RUNS")
    monkeypatch.chdir(tmp_path)
    assert colab.runs_dir().resolve() == (tmp_path / "runs").resolve()


def test_runs_dir_mounts_google_drive_on_colab_once(tmp_path, monkeypatch):
    mounted = []

    def mount(where):
        mounted.append(where)
        (Path(where) / "MyDrive").mkdir(parents=True)

    fake = types.ModuleType("google.colab")
    fake.drive = types.SimpleNamespace(mount=mount)
    monkeypatch.setitem(sys.modules, "google.colab", fake)
    first = colab.runs_dir(drive_mount=tmp_path / "drive")
    again = colab.runs_dir(drive_mount=tmp_path / "drive")
    assert first == again == tmp_path / "drive" / "MyDrive" / "jedi_runs" and first.is_dir()
    assert mounted == [str(tmp_path / "drive")]
