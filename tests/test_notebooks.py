"""The notebooks are Colab-ready and their helpers behave: badges, set-up cells, Drive run folders, the viewer."""

import importlib.util
import io
import sys
import types
from pathlib import Path

import nbformat
import numpy as np
import pytest

from jedi_core import colab
from jedi_core.viz import latent_mosaic, render_rollout_step, rollout_viewer

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
    assert f"git clone -q --depth 1 {headers.repository_url()}.git" in setup
    install = [line for line in setup.splitlines() if "pip install" in line]
    assert install and not any("torch" in line for line in install)  # Colab's CUDA torch must stay


def test_header_refresh_is_idempotent_and_keeps_the_notebook(tmp_path):
    notebook = tmp_path / "09_example.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# 09 · Example\n\nText."),
                                         nbformat.v4.new_code_cell("x = 1")])
    nbformat.write(nb, notebook)
    assert headers.refresh(notebook) is True
    assert headers.refresh(notebook) is False
    cells = nbformat.read(notebook, as_version=4).cells
    assert [c.cell_type for c in cells] == ["markdown", "code", "code"]
    assert cells[0].source.startswith("# 09 · Example\n\n[![Open In Colab]") and cells[0].source.endswith("Text.")
    assert cells[2].source == "x = 1"


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


def test_latent_mosaic_tiles_channels_on_a_square_grid():
    latent = np.arange(16 * 2 * 3, dtype=float).reshape(16, 2, 3)
    mosaic = latent_mosaic(latent, gap=1)
    assert mosaic.shape == (4 * 3 - 1, 4 * 4 - 1)
    np.testing.assert_array_equal(mosaic[0:2, 0:3], latent[0])
    np.testing.assert_array_equal(mosaic[3:5, 4:7], latent[5])  # row 1, column 1
    assert np.isnan(mosaic[2, 0]) and np.isnan(mosaic[0, 3])


def _rollout(steps=5, channels=4):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (steps, 64, 64, 3), dtype=np.uint8)
    latents = rng.normal(size=(steps, channels, 8, 8))
    rewards = np.array([0, 0, 1, 0][: steps - 1], dtype=float)
    ends = np.array([False, False, True, False][: steps - 1])
    return frames, latents, rewards, ends


def test_render_rollout_step_draws_frame_latent_and_timeline():
    import matplotlib.pyplot as plt

    figure = render_rollout_step(*_rollout(), step=3, actions=[0, 1, 2, 1], action_names=["NOOP", "LEFT", "RIGHT"])
    frame_axis, latent_axis, time_axis = figure.axes[:3]
    assert "imagined step 3 after RIGHT" in frame_axis.get_title()
    assert "4 channels of 8x8" in latent_axis.get_title() and latent_axis.images[0].get_clim()[1] > 0
    assert len(time_axis.patches) == 4  # one reward bar per transition
    plt.close(figure)


def test_rollout_viewer_slider_swaps_the_picture():
    viewer = rollout_viewer(*_rollout())
    controls, image = viewer.children
    play, slider = controls.children
    assert slider.max == play.max == 4
    first = image.value
    slider.value = 3
    assert image.value != first and image.value[:8] == b"\x89PNG\r\n\x1a\n"
    slider.value = 0
    assert image.value == first


def test_frames_to_gif_keeps_every_frame_and_the_scale():
    from PIL import Image, ImageSequence

    from jedi_core.viz import frames_to_gif

    frames = np.zeros((5, 8, 10, 3), np.uint8)
    for t in range(5):
        frames[t, :, t] = 255  # a white column that moves, so no two frames are alike
    gif = Image.open(io.BytesIO(frames_to_gif(frames, fps=10, scale=3)))
    pictures = [np.array(p.convert("RGB")) for p in ImageSequence.Iterator(gif)]
    assert len(pictures) == 5 and pictures[0].shape == (24, 30, 3)
    assert pictures[2][:, 6:9].min() == 255 and pictures[2][:, :6].max() == 0


def test_show_video_reads_an_mp4_back_as_a_gif(tmp_path):
    from jedi_core.video import write_mp4
    from jedi_core.viz import show_video

    frames = np.random.default_rng(0).integers(0, 256, (6, 64, 64, 3), dtype=np.uint8)
    image = show_video(write_mp4(tmp_path / "clip.mp4", frames, fps=5), max_frames=4)
    assert image.data[:6] == b"GIF89a"
    with pytest.raises(FileNotFoundError, match="no video frames"):
        show_video(tmp_path / "missing.mp4")
