"""Play inside the dream: you choose every action, the world model imagines the next frame, the reward and the
end, and never sees the real game again after its four-frame context.

This is DIAMOND's "play the world model" mode, in a notebook: :class:`DreamGame` is the game (plain Python,
tested like the rest), :func:`dream_widget` its buttons and picture (ipywidgets, so it works in JupyterLab and
on Colab). For a latent world model the picture is the decoder probe's drawing of the imagined latent, which
never shapes the world model; the pixel baseline's imagined frames are pictures already.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from jedi_core.analysis.video import draw_latents
from jedi_core.nn.probe import DecoderProbe
from jedi_core.replay import frames_to_float
from jedi_core.world_model import ImaginationState, PixelWorldModel, WorldModel


class DreamGame:
    """An imagined game driven by your actions, one :meth:`step` at a time.

    ``frames`` (L, H, W, 3) uint8 and the ``L - 1`` ``actions`` between them are the real context it starts
    from (L = the world model's context length); ``probe`` draws latents (None for the pixel baseline).
    The same ``seed`` and actions replay the same dream.
    """

    def __init__(self, world_model: WorldModel, probe: DecoderProbe | None, frames: np.ndarray,
                 actions: np.ndarray, seed: int = 0):
        length = world_model.context_length
        if len(frames) != length or len(actions) != length - 1:
            raise ValueError(f"a dream starts from {length} real frames and the {length - 1} actions between "
                             f"them; got {len(frames)} frames and {len(actions)} actions")
        if probe is None and not isinstance(world_model, PixelWorldModel):
            raise ValueError("a latent world model needs its decoder probe to draw the dream (train with "
                             "world_model.decoder_probe=true, or fit one: "
                             "analysis.probe_fit.fit_decoder_probe)")
        self.world_model = world_model
        self.probe = probe
        self.seed = seed
        self._context = (frames, actions)
        self.reset()

    def reset(self) -> np.ndarray:
        """Back to the real context; returns its last frame. The random numbers start again from ``seed``."""
        frames, actions = self._context
        device = next(self.world_model.parameters()).device
        self.generator = torch.Generator(device).manual_seed(self.seed)
        context = frames_to_float(torch.from_numpy(np.ascontiguousarray(frames)).to(device))[None]
        self.world_model.eval()
        with torch.no_grad():
            self.state: ImaginationState = self.world_model.burn_in(context, torch.as_tensor(actions)[None]
                                                                     .to(device))
        self.steps = 0
        self.total_reward = 0.0
        self.ended = False
        self.picture = frames[-1]
        return self.picture

    def step(self, action: int) -> tuple[np.ndarray, float, bool]:
        """Imagine the outcome of ``action``: the next picture, the reward (-1, 0 or +1) and whether the game
        ended. After an end only :meth:`reset` continues: nothing follows a terminal frame."""
        if self.ended:
            raise RuntimeError("the dream has ended: reset() starts it again from the real context")
        device = self.state.latents.device
        with torch.no_grad():
            latent, reward, end, self.state = self.world_model.imagine_step(
                self.state, torch.tensor([action], device=device), self.generator)
            self.picture = draw_latents(self.probe, latent)[0]
        self.steps += 1
        self.total_reward += float(reward[0])
        self.ended = bool(end[0])
        return self.picture, float(reward[0]), self.ended


def dream_widget(game: DreamGame, action_names: Sequence[str], scale: int = 4):
    """Buttons, one per action, under the dreamed picture, with the step, reward and return beside it.

    Keys are not wired: ipywidgets has no keyboard events of its own (the ``ipyevents`` package adds them).
    """
    import io

    import ipywidgets as widgets
    from PIL import Image

    def png(picture: np.ndarray) -> bytes:
        image = Image.fromarray(picture)
        buffer = io.BytesIO()
        image.resize((image.width * scale, image.height * scale), Image.NEAREST).save(buffer, format="png")
        return buffer.getvalue()

    image = widgets.Image(value=png(game.picture), format="png")
    status = widgets.HTML()
    buttons = [widgets.Button(description=name, layout=widgets.Layout(width="auto")) for name in action_names]
    restart = widgets.Button(description="restart from the real frames", button_style="warning")

    def show(reward: float | None = None) -> None:
        image.value = png(game.picture)
        last = "" if reward is None else f" | reward {reward:+.0f}"
        ended = " | <b>the world model ended the game</b>: restart" if game.ended else ""
        status.value = f"imagined step {game.steps}{last} | return {game.total_reward:+.0f}{ended}"
        for button in buttons:
            button.disabled = game.ended

    def press(index: int):
        def on_click(_button) -> None:
            _picture, reward, _end = game.step(index)
            show(reward)
        return on_click

    for index, button in enumerate(buttons):
        button.on_click(press(index))
    restart.on_click(lambda _button: (game.reset(), show()))
    show()
    return widgets.VBox([widgets.HBox([image, status]), widgets.HBox(buttons, layout=widgets.Layout(
        flex_flow="row wrap")), restart])
