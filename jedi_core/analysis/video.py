"""Videos of a trained agent: what it does in the real game, and what its world model imagines meanwhile.

``agent`` is one evaluation episode. ``agent_vs_imagination`` puts the real episode on the left and, on the
right, the world model's *open-loop* imagination of it: burnt in on the first ``context_length`` real frames,
then fed the same actions the agent took, never seeing another real frame. Where the two panels drift apart is
where the world model is wrong (imagination).

Both are videos that browsers, Jupyter and Colab play: H.264 in ``.mp4`` with the ``video`` extra
(imageio-ffmpeg's ffmpeg), else VP9 in ``.webm`` through OpenCV's own ffmpeg (OpenCV's ``mp4v`` plays in
neither Chrome nor Colab, and its wheels carry no H.264 encoder).

JEDI imagines latents, not pixels; they are drawn by the decoder probe, which learns to draw *detached*
latents and never trains the encoder. A run trained without the probe gets one fitted here, on its replay.
"""

from __future__ import annotations

import hashlib
import io
import os
import types
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import torch

from jedi_core.agent import Agent, EpisodeRecording, play_episode
from jedi_core.analysis.probe_fit import fit_decoder_probe
from jedi_core.config import Config
from jedi_core.envs import make_env
from jedi_core.nn.probe import DecoderProbe
from jedi_core.replay import ReplayBuffer, frames_to_float
from jedi_core.runtime import atomic_write_bytes
from jedi_core.world_model import WorldModel

#: Longest episode a video shows: 2,000 agent steps, about a 2-minute video at an Atari run's frame rate.
VIDEO_MAX_STEPS = 2_000
#: Frames a second of the Atari emulator; a video shows one frame per agent step, so 60 / frame_skip.
ATARI_FPS = 60
#: Frames a second of the toy game's videos: slow enough to follow the ball falling one cell a step.
TOY_FPS = 4
#: The formats :func:`write_video` writes: H.264 mp4 (with imageio-ffmpeg), else VP9 WebM.
VIDEO_SUFFIXES = (".mp4", ".webm")


@torch.no_grad()
def imagine_episode(world_model: WorldModel, recording: EpisodeRecording, probe: DecoderProbe | None,
                    seed: int = 0) -> np.ndarray:
    """Open-loop imagination of an episode played with ``keep_frames``: uint8 frames matching the real ones.

    The first ``context_length`` frames are the real ones (the burn-in); every later frame is imagined from
    the previous imagined ones and the recorded action. ``probe`` draws latents (None: the pixel model).
    """
    length = world_model.context_length
    if len(recording.frames) <= length:
        return recording.frames.copy()
    device = next(world_model.parameters()).device
    world_model.eval()
    generator = torch.Generator(device).manual_seed(seed)
    context = frames_to_float(torch.from_numpy(recording.frames[:length]).to(device))[None]
    actions = torch.from_numpy(recording.actions).to(device)
    imagined = list(recording.frames[:length])
    state = world_model.burn_in(context, actions[None, :length - 1])
    for step in range(length - 1, len(actions)):
        latent, _, _, state = world_model.imagine_step(state, actions[step:step + 1], generator)
        imagined.append(draw_latents(probe, latent)[0])
    return np.stack(imagined)


def side_by_side(left: np.ndarray, right: np.ndarray, gap: int = 4) -> np.ndarray:
    """(T, H, W, 3) and (T, H, W, 3) -> (T, H, 2W + gap, 3), a white bar between them."""
    bar = np.full((*left.shape[:2], gap, 3), 255, np.uint8)
    return np.concatenate([left, bar, right], axis=2)


def write_video(path: str | Path, frames: np.ndarray, fps: int = 15, scale: int = 4) -> Path:
    """Write uint8 RGB frames (T, H, W, 3) as a video, upscaled ``scale``x with nearest pixels; atomically.

    ``path``'s suffix is replaced by the format written, and the path written is returned: ``.mp4`` (H.264)
    where imageio-ffmpeg is installed, else ``.webm`` (VP9). A video of the other format left at the same
    name (an earlier call, another install) is removed, so a folder never holds two different episodes
    under one name.
    """
    try:
        import imageio_ffmpeg
    except ImportError:
        imageio_ffmpeg = None
    suffix = ".mp4" if imageio_ffmpeg is not None else ".webm"
    path = Path(path).with_suffix(suffix)
    path.parent.mkdir(parents=True, exist_ok=True)
    size = (frames.shape[2] * scale, frames.shape[1] * scale)  # (width, height)
    big = (cv2.resize(frame, size, interpolation=cv2.INTER_NEAREST) for frame in frames)  # one at a time
    partial = path.with_name(f".{path.stem}.partial{suffix}")  # the writers pick the container by extension
    try:
        if imageio_ffmpeg is not None:
            _write_h264(imageio_ffmpeg, partial, big, size, fps)
        else:
            _write_vp9(partial, big, size, fps)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, path)
    for stale in VIDEO_SUFFIXES:
        if stale != suffix:
            path.with_suffix(stale).unlink(missing_ok=True)
    return path


def _write_h264(imageio_ffmpeg: types.ModuleType, path: Path, frames: Iterator[np.ndarray],
                size: tuple[int, int], fps: int) -> None:
    """H.264 in yuv420p (the pixel format browsers decode); ``+faststart`` lets it play before it loads."""
    writer = imageio_ffmpeg.write_frames(str(path), size, fps=fps, codec="libx264", quality=8,
                                         macro_block_size=2, output_params=["-movflags", "+faststart"])
    writer.send(None)  # starts ffmpeg
    try:
        for frame in frames:
            writer.send(np.ascontiguousarray(frame))
    finally:
        writer.close()


def _write_vp9(path: Path, frames: Iterator[np.ndarray], size: tuple[int, int], fps: int) -> None:
    """VP9 in WebM through OpenCV (its ffmpeg prints a harmless line: WebM files carry no codec tag)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"VP90"), fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write VP9 WebM files here (tried {path}); install the video extra "
                           "for H.264 mp4s: pip install 'jedi-core[video]'")
    try:
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()


def write_videos(agent: Agent, cfg: Config, out_dir: str | Path, seed: int,
                 replay: ReplayBuffer | None = None, probe_updates: int = 500,
                 progress: bool = False, probe_file: str | Path | None = None) -> dict[str, Path]:
    """The videos ``agent`` and ``agent_vs_imagination`` of one evaluation episode, in ``out_dir``
    (:func:`write_video`: ``.mp4`` or ``.webm``).

    A JEDI run without a decoder probe gets one fitted on ``replay`` for ``probe_updates`` updates
    (``progress``: with a progress bar). With ``probe_file`` the fitted probe is saved there and reused by
    the next call, as long as the encoder's weights and ``probe_updates`` are the same.
    """
    out_dir = Path(out_dir)
    env = make_env(cfg.env)
    recording = play_episode(agent, env, seed, max_steps=VIDEO_MAX_STEPS, keep_frames=True)
    env.close()
    world_model = agent.world_model
    probe = None
    if cfg.method == "jedi":
        probe = world_model.probe
        if probe is None:
            if replay is None or not replay.episodes:
                raise ValueError("JEDI's imagined latents need a decoder probe to be drawn: this run has "
                                 "none and no replay to fit one on")
            probe = _cached_probe(world_model, probe_file, probe_updates)
            if probe is None:
                frames = [episode.obs for episode in replay.episodes]
                probe = fit_decoder_probe(world_model, frames, probe_updates, seed=seed, progress=progress)
                if probe_file is not None:
                    state = {"encoder": _encoder_digest(world_model), "updates": probe_updates,
                             "probe": probe.state_dict()}
                    buffer = io.BytesIO()
                    torch.save(state, buffer)
                    atomic_write_bytes(probe_file, buffer.getvalue())
    imagined = imagine_episode(world_model, recording, probe, seed=seed)
    fps = ATARI_FPS // cfg.env.frame_skip if cfg.env.kind == "atari" else TOY_FPS
    return {"agent": write_video(out_dir / "agent", recording.frames, fps),
            "agent_vs_imagination": write_video(out_dir / "agent_vs_imagination",
                                                side_by_side(recording.frames, imagined), fps)}


def _encoder_digest(world_model: WorldModel) -> str:
    """A fingerprint of the encoder's weights: a probe fitted on its latents fits no other encoder."""
    digest = hashlib.sha256()
    for tensor in world_model.encoder.state_dict().values():
        digest.update(tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()


def _cached_probe(world_model: WorldModel, probe_file: str | Path | None, updates: int
                  ) -> DecoderProbe | None:
    """The probe saved in ``probe_file`` if it was fitted on this encoder for as many updates, else None."""
    if probe_file is None or not Path(probe_file).is_file():
        return None
    try:
        state = torch.load(probe_file, map_location="cpu", weights_only=True)
    except Exception:  # a damaged cache is fitted again
        return None
    if state.get("encoder") != _encoder_digest(world_model) or state.get("updates") != updates:
        return None
    device = next(world_model.parameters()).device
    probe = DecoderProbe(world_model.latent_shape[0], world_model.cfg.probe_channels)
    probe.load_state_dict(state["probe"])
    return probe.to(device).eval()


@torch.no_grad()
def draw_latents(probe: DecoderProbe | None, latents: torch.Tensor) -> np.ndarray:
    """(N, C, h, w) latents -> (N, H, W, 3) uint8 pictures drawn by the decoder probe; ``probe=None``: the
    pixel model's imagined frames, which are pictures already."""
    pictures = probe.decode(latents) if probe is not None else latents.clamp(-1, 1)
    return np.stack([_to_uint8(picture) for picture in pictures])


def _to_uint8(frame: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [-1, 1] -> (H, W, 3) uint8."""
    return frame.add(1).mul(127.5).round().clamp(0, 255).byte().permute(1, 2, 0).cpu().numpy()
