"""Which loss trains which network: measured with autograd, then drawn as one picture.

JEDI has three losses and four networks, and the arrows between them are the method: the diffusion loss trains
the denoiser and, through the *context* latents only (the target latent is a stop-gradient), the encoder; the
reward/end loss trains the reward/end model and the encoder too; the actor-critic loss trains the actor-critic
alone, because imagination runs the world model without gradient. :func:`gradient_reach` measures each arrow
(the gradient norm a loss sends into each network) instead of asserting it, and :func:`plot_gradient_flow`
draws what was measured.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

#: The losses, in the order Algorithm 1 runs them, and the world-model part each one updates.
LOSS_PARTS = {"diffusion loss": "diffusion", "reward/end loss": "reward_end", "actor-critic loss": None}


def _networks(agent) -> dict[str, nn.Module]:
    world_model = agent.world_model
    networks = {"encoder": world_model.encoder, "denoiser": world_model.denoiser,
                "decoder probe": world_model.probe if world_model.probe is not None else nn.Identity(),
                "reward/end model": world_model.reward_end, "actor-critic": agent.actor_critic}
    return {name: module for name, module in networks.items() if any(True for _ in module.parameters())}


def _gradient_norms(networks: Mapping[str, nn.Module]) -> dict[str, float]:
    norms = {}
    for name, module in networks.items():
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        norms[name] = float(torch.stack([g.norm() for g in grads]).norm()) if grads else 0.0
    return norms


def gradient_reach(agent, batches: Mapping[str, object], contexts: tuple[Tensor, Tensor]
                   ) -> dict[str, dict[str, float]]:
    """``{loss: {network: gradient norm}}``: one backward pass per loss, from zeroed gradients.

    ``batches``: a ``TorchBatch`` per world-model loss (``"diffusion"``, ``"reward_end"``: what
    ``replay.sample_diffusion_batch`` and ``sample_reward_end_batch`` give); ``contexts``: real contexts to
    imagine from, as ``replay.sample_contexts`` gives them. Leaves every gradient at None.
    """
    from jedi_core.imagination import actor_critic_loss, imagine

    networks = _networks(agent)
    reach = {}
    for loss_name, part in LOSS_PARTS.items():
        agent.zero_grad(set_to_none=True)
        if part is None:
            ac_cfg = agent.cfg.actor_critic
            rollout = imagine(agent.world_model, agent.actor_critic, *contexts, ac_cfg.horizon)
            loss = actor_critic_loss(rollout, ac_cfg)[0]
        else:
            loss = getattr(agent.world_model, f"{part}_loss")(batches[part])[0]
        loss.backward()
        reach[loss_name] = _gradient_norms(networks)
    agent.zero_grad(set_to_none=True)
    return reach


#: What each arrow carries, where the method makes a choice about it.
NOTES = {("diffusion loss", "encoder"): "through the context latents only:\n"
                                        "the target latent is a stop-gradient",
         ("reward/end loss", "encoder"): "through both latents of each transition",
         ("diffusion loss", "decoder probe"): "on detached latents: pictures only"}


def plot_gradient_flow(reach: Mapping[str, Mapping[str, float]],
                       title: str = "which loss trains which network"):
    """Losses on the left, networks on the right, an arrow wherever a loss's gradient reached a network
    (a norm above zero); a network no arrow reaches is marked as such. Returns the figure."""
    import matplotlib.pyplot as plt

    losses = list(reach)
    networks = list(next(iter(reach.values())))
    figure, axis = plt.subplots(figsize=(8.5, 0.9 * max(len(losses), len(networks)) + 0.8))
    loss_y = {name: 1 - (i + 0.5) / len(losses) for i, name in enumerate(losses)}
    network_y = {name: 1 - (i + 0.5) / len(networks) for i, name in enumerate(networks)}
    box = {"boxstyle": "round,pad=0.4", "linewidth": 1}
    for name, y in loss_y.items():
        axis.text(0.08, y, name, ha="center", va="center", bbox={**box, "facecolor": "#fde9d9"})
    for name, y in network_y.items():
        axis.text(0.9, y, name, ha="center", va="center", bbox={**box, "facecolor": "#dde8f5"})
    for loss_index, (loss_name, norms) in enumerate(reach.items()):
        for network, norm in norms.items():
            if norm <= 0:
                continue
            start, end = (0.2, loss_y[loss_name]), (0.78, network_y[network])
            axis.annotate("", xy=end, xytext=start,
                          arrowprops={"arrowstyle": "->", "color": f"C{loss_index}", "linewidth": 1.6})
            note = NOTES.get((loss_name, network))
            if note:  # near the arrow's head, on a white ground, so that crossing arrows do not hide it
                where = (start[0] + 0.7 * (end[0] - start[0]), start[1] + 0.7 * (end[1] - start[1]))
                axis.text(*where, note, fontsize=7, ha="center", va="center", color=f"C{loss_index}",
                          bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.9, "pad": 1})
    untouched = [name for name in networks if all(norms[name] <= 0 for norms in reach.values())]
    for name in untouched:
        axis.text(0.9, network_y[name] - 0.07, "no gradient", ha="center", fontsize=7, color="grey")
    axis.text(0.5, 0.0, "the actor-critic learns on imagined latents, the world model run without gradient: "
                        "no arrow goes back into it", ha="center", va="bottom", fontsize=7, color="C2")
    axis.set_xlim(0, 1)
    axis.set_ylim(-0.02, 1.02)
    axis.axis("off")
    axis.set_title(title)
    figure.tight_layout()
    return figure
