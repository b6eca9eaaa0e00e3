"""jedi_core.analysis.video: videos in a format browsers play (H.264 mp4, else VP9 WebM) that read back frame
for frame, and open-loop imagination aligned with the real episode."""

import sys

import cv2
import numpy as np
import pytest
import torch

from jedi_core.agent import Agent, play_episode
from jedi_core.analysis.probe_fit import fit_decoder_probe
from jedi_core.analysis.video import imagine_episode, side_by_side, write_video
from jedi_core.envs import env_num_actions, make_env
from jedi_core.presets import make_config
from jedi_core.training.collect import collect_random_steps

#: The codec tags OpenCV reads back for each format, and the suffix that names it.
FORMATS = {"h264": (".mp4", {"h264", "avc1"}), "vp9": (".webm", {"vp90", "vp09"})}


def _read_video(path):
    capture, frames = cv2.VideoCapture(str(path)), []
    while True:
        ok, frame = capture.read()
        if not ok:
            return np.stack(frames)
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))


def _codec(path):
    fourcc = int(cv2.VideoCapture(str(path)).get(cv2.CAP_PROP_FOURCC))
    return fourcc.to_bytes(4, "little").decode("ascii", "replace").lower()


@pytest.fixture(params=sorted(FORMATS))
def video_format(request, monkeypatch):
    """Each way of writing: H.264 through imageio-ffmpeg, or VP9 through OpenCV when it is not installed."""
    if request.param == "h264":
        import imageio_ffmpeg  # noqa: F401  (the test extra installs it: missing, this fails rather than skips)
    else:
        monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # its import now fails
    return request.param


def test_a_video_is_h264_or_vp9_and_reads_back_with_every_frame_upscaled(tmp_path, video_format):
    frames = np.zeros((6, 8, 8, 3), np.uint8)
    for t in range(6):
        frames[t, :, : t + 1] = (200, 40, 40)  # a red band that widens each frame
    path = write_video(tmp_path / "clip", frames, fps=5, scale=8)
    suffix, codecs = FORMATS[video_format]
    assert path == tmp_path / f"clip{suffix}" and path.is_file() and not list(tmp_path.glob(".*partial*"))
    assert _codec(path) in codecs
    back = _read_video(path)
    assert back.shape == (6, 64, 64, 3)
    red_columns = (back[..., 0].astype(int) > 120).mean(axis=1) > 0.5  # (T, 64)
    assert [int(c.sum()) for c in red_columns] == pytest.approx([8, 16, 24, 32, 40, 48], abs=2)


def test_a_video_of_the_other_format_under_the_same_name_is_replaced(tmp_path, monkeypatch):
    import imageio_ffmpeg  # noqa: F401  (the test extra installs it)
    frames = np.zeros((2, 8, 8, 3), np.uint8)
    first = write_video(tmp_path / "agent.mp4", frames)
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)
    second = write_video(tmp_path / "agent.mp4", frames)
    assert (first.name, second.name) == ("agent.mp4", "agent.webm")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["agent.webm"]


def test_side_by_side_keeps_both_panels():
    left, right = np.zeros((2, 4, 4, 3), np.uint8), np.full((2, 4, 4, 3), 7, np.uint8)
    both = side_by_side(left, right, gap=2)
    assert both.shape == (2, 4, 10, 3)
    assert (both[:, :, :4] == 0).all() and (both[:, :, 6:] == 7).all() and (both[:, :, 4:6] == 255).all()


@pytest.mark.parametrize("preset", ["toy", "smoke_diamond"])
def test_imagination_video_starts_from_the_real_context(preset):
    cfg = make_config(preset, ["env.kind=toy"])
    torch.manual_seed(0)
    agent = Agent(cfg, env_num_actions(cfg.env))
    recording = play_episode(agent, make_env(cfg.env), seed=3, keep_frames=True)
    assert len(recording.frames) == len(recording.actions) + 1 == 8  # Catch lasts 7 steps
    probe = None
    if cfg.method == "jedi":
        frames = [episode.obs for episode in collect_random_steps(cfg.env, 50, seed=0).episodes]
        probe = fit_decoder_probe(agent.world_model, frames, updates=2)
    imagined = imagine_episode(agent.world_model, recording, probe)
    context = agent.world_model.context_length
    assert imagined.shape == recording.frames.shape and imagined.dtype == np.uint8
    np.testing.assert_array_equal(imagined[:context], recording.frames[:context])
    # Untrained, imagination differs from what happened.
    assert not np.array_equal(imagined[context:], recording.frames[context:])
