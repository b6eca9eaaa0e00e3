"""Draw JEDI's data flow: what each network reads and writes, and which loss trains which network, measured.

    python tools/data_flow.py        # writes assets/data_flow.png and assets/data_flow.json

The solid arrows are the method's forward pass: real frames to the encoder, its latents to the denoiser and
the reward/end model, the actor-critic acting on latents, and in imagination the action fed back to the world
model. The dashed arrows are measured: :func:`~jedi_core.analysis.gradient_flow.gradient_reach` runs each loss
backward through the shipped Krull agent (``assets/krull_cpu_agent.pt``) on replay-shaped batches, and a loss
gets an arrow to a network only where its gradient norm there is above zero. ``assets/data_flow.json`` keeps
the measured arrows; a test measures them again and fails when they differ, so the picture cannot drift from
the code.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

ROOT = Path(__file__).resolve().parents[1]
AGENT = ROOT / "assets" / "krull_cpu_agent.pt"
PICTURE, ARROWS = ROOT / "assets" / "data_flow.png", ROOT / "assets" / "data_flow.json"

#: Where each box sits (axes fractions) and what it says.
BOXES = {
    "frames": ((0.07, 0.78), "real frames\n$x_{t-3..t},\\ x_{t+1}$\n64 x 64 x 3"),
    "encoder": ((0.24, 0.78), "encoder"),
    "latents": ((0.41, 0.78), "latents\n$z_{t-3..t}$ (context)\n$z_{t+1}$ (target, sg)"),
    "denoiser": ((0.60, 0.78),
                 "denoiser\n$\\hat z_{t+1}$ from noised $z_{t+1}$,\n$z_{t-3..t}$, $a_{t-3..t}$"),
    "reward/end model": ((0.60, 0.47),
                         "reward/end model\n$\\hat r_t,\\ \\hat d_t$ from\n$(z_t, z_{t+1}),\\ a_t$"),
    "decoder probe": ((0.22, 0.47), "decoder probe\n(pictures of detached\nlatents)"),
    "actor-critic": ((0.41, 0.16), "actor-critic\n$\\pi(a_t | z_{\\leq t}),\\ V(z_{\\leq t})$"),
    "diffusion loss": ((0.87, 0.78), "diffusion loss\n(EDM; the 2nd target is\nconditioned on the 1st's\n"
                                     "prediction or latent:\nswitch)"),
    "reward/end loss": ((0.87, 0.47), "reward/end loss\n(cross-entropy,\nreal transitions)"),
    "actor-critic loss": ((0.87, 0.16),
                          "actor-critic loss\n(REINFORCE + value\non imagined\n$\\lambda$-returns)"),
}
NETWORKS = ("encoder", "denoiser", "reward/end model", "decoder probe", "actor-critic")
LOSSES = ("diffusion loss", "reward/end loss", "actor-critic loss")
#: What a measured gradient arrow carries, where the method chooses it, and where the note sits.
NOTES = {("diffusion loss", "encoder"): ((0.55, 0.665), "through the context latents only (the target: sg)"),
         ("reward/end loss", "encoder"): ((0.15, 0.64), "through both latents\nof each transition")}
#: The forward pass: (from, to, label).
FORWARD = [("frames", "encoder", ""), ("encoder", "latents", ""), ("latents", "denoiser", ""),
           ("latents", "reward/end model", ""), ("latents", "decoder probe", ""),
           ("latents", "actor-critic", "$z_t$ (detached)"), ("denoiser", "diffusion loss", ""),
           ("reward/end model", "reward/end loss", ""), ("actor-critic", "actor-critic loss", "")]


def measure_arrows(agent_path: Path = AGENT) -> dict[str, list[str]]:
    """``{loss: [networks its gradient reaches]}``, measured on the agent at ``agent_path``."""
    from jedi_core.analysis.bench import synthetic_replay
    from jedi_core.analysis.gradient_flow import gradient_reach
    from jedi_core.training.checkpoint import load_agent
    from jedi_core.training.updates import draw_inputs

    torch.manual_seed(0)
    cfg, agent, _ = load_agent(agent_path, device="cpu")
    replay, rng = synthetic_replay(300, agent.num_actions), np.random.default_rng(0)
    batches = {kind: draw_inputs(kind, cfg, replay, rng, "cpu")[0] for kind in ("diffusion", "reward_end")}
    contexts = draw_inputs("actor_critic", cfg, replay, rng, "cpu")
    reach = gradient_reach(agent, batches, contexts)
    return {loss: [network for network in NETWORKS if reach[loss].get(network, 0.0) > 0] for loss in LOSSES}


def _arrow(axis, boxes: dict, start: str, end: str, **style) -> None:
    """An arrow from box ``start`` to box ``end``, clipped at their outlines."""
    source, target = boxes[start], boxes[end]
    axis.annotate("", xy=(0.5, 0.5), xycoords=target, xytext=(0.5, 0.5), textcoords=source,
                  arrowprops={"arrowstyle": "-|>", "patchA": source.get_bbox_patch(),
                              "patchB": target.get_bbox_patch(), "shrinkA": 2, "shrinkB": 2, **style})


def draw(arrows: dict[str, list[str]]) -> Figure:
    """The picture: the forward pass in grey, each loss's measured gradients dashed in its colour."""
    figure = Figure(figsize=(13, 7), layout="constrained")
    FigureCanvasAgg(figure)
    axis = figure.subplots()
    colours = {"diffusion loss": "C0", "reward/end loss": "C1", "actor-critic loss": "C2"}
    boxes = {}
    for name, ((x, y), text) in BOXES.items():
        face = "#fde9d9" if name in LOSSES else "#dde8f5" if name in NETWORKS else "#eeeeee"
        boxes[name] = axis.text(x, y, text, ha="center", va="center", fontsize=9, zorder=3,
                                bbox={"boxstyle": "round,pad=0.5", "facecolor": face,
                                      "edgecolor": colours.get(name, "black"), "linewidth": 1.2})
    figure.canvas.draw()  # the boxes' outlines exist once drawn: the arrows are clipped at them
    for start, end, label in FORWARD:
        _arrow(axis, boxes, start, end, color="grey", linewidth=1.4)
        if label:
            (x0, y0), (x1, y1) = BOXES[start][0], BOXES[end][0]
            axis.text((x0 + x1) / 2 + 0.01, (y0 + y1) / 2, label, fontsize=8, color="dimgrey", ha="left")
    # Imagination: the actor's action drives the world model, which runs without gradient.
    _arrow(axis, boxes, "actor-critic", "reward/end model", color="grey", linestyle=":", linewidth=1.4)
    axis.text(0.54, 0.27, "imagination: $a_t$ to the denoiser (3 Euler steps)\nand the reward/end model, "
                          "no gradient", fontsize=8, color="dimgrey", ha="left")
    for loss, networks in arrows.items():
        for network in networks:
            _arrow(axis, boxes, loss, network, color=colours[loss], linestyle="--", linewidth=1.3,
                   connectionstyle="arc3,rad=-0.2")
    for (loss, network), (where, note) in NOTES.items():
        if network in arrows[loss]:
            axis.text(*where, note, fontsize=8, color=colours[loss], ha="center",
                      bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.85, "pad": 1})
    axis.text(0.5, 0.0, "solid: the forward pass; dashed: where each loss's gradient reaches, measured by "
                        "autograd on the shipped Krull agent (tools/data_flow.py); sg: stop-gradient",
              ha="center", va="bottom", fontsize=8, color="dimgrey")
    axis.set_xlim(0, 1)
    axis.set_ylim(-0.02, 1.0)
    axis.axis("off")
    axis.set_title("JEDI: what each network reads, and which loss trains which network")
    return figure


def main() -> int:
    arrows = measure_arrows()
    draw(arrows).savefig(PICTURE, dpi=100)
    ARROWS.write_text(json.dumps(arrows, indent=1) + "\n")
    print(f"wrote {PICTURE.relative_to(ROOT)} and {ARROWS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
