"""jedi_core.analysis.launches: kernel launches counted on the CPU (``python -m jedi_core bench --ops``)."""

import torch

from jedi_core.analysis.launches import count_launches, format_launch_table, launch_counts


def test_the_counter_counts_kernels_and_not_views():
    x = torch.randn(4, 3)
    assert count_launches(lambda: x + 1).total == 1
    assert count_launches(lambda: x.view(12)[2:].unsqueeze(0)).total == 0
    counted = count_launches(lambda: torch.relu(x @ x.t()).sum())
    assert counted.total == 3 and set(counted.ops) == {"mm", "relu", "sum"}


def test_launch_counts_of_a_preset_and_what_cuda_graphs_leave():
    counts = launch_counts("smoke")
    assert counts["world_model_step"] < counts["imagined_step"]  # the policy adds its own kernels
    assert counts["imagined_step_cuda_graphs"] < counts["imagined_step"] - counts["world_model_step"] + 50
    for update in ("world_model_update_diffusion", "world_model_update_reward_end", "actor_critic_update"):
        # A replayed update: one launch, its buffer copies, the optimiser's fused step (tens, not hundreds).
        assert 5 < counts[f"{update}_cuda_graphs"] < counts[update] / 10, update
    # An actor-critic update runs H imagined steps.
    assert counts["actor_critic_update"] > counts["horizon"] * counts["imagined_step"]
    table = format_launch_table([counts])
    assert f"| per reward/end update | {counts['world_model_update_reward_end']:,} |" in table
    assert table.count("the same, in a CUDA graph") == 3
