"""The fast GPU path, exercised on the CPU: no host-device waits in the update loops, logs read in one transfer,
bf16 autocast and torch.compile within tolerance of fp32 eager (DESIGN §6)."""

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from jedi_core.agent import Agent
from jedi_core.bench import synthetic_replay
from jedi_core.config import make_config
from jedi_core.data import TorchBatch
from jedi_core.imagination import actor_critic_training_step, sample_contexts
from jedi_core.logs import mean_logs, non_finite, to_floats
from jedi_core.nn.masked import masked_std
from jedi_core.performance import compile_agent, compiled_modules, output_deviation
from jedi_core.world_model import sample_training_batch

NUM_ACTIONS = 4

# Ops that make the host wait for the device: reading a value (.item(), bool(), float()), data-dependent
# shapes (nonzero, masked_select; boolean indexing goes through aten.index with a bool index), and
# multinomial, whose CUDA kernel reads the probabilities back to check them (inside the kernel, where this
# mode cannot see it, so the op itself is listed).
WAITING_OPS = {"_local_scalar_dense", "nonzero", "masked_select", "is_nonzero", "equal", "unique_consecutive",
               "_unique2", "multinomial"}


class HostWaits(TorchDispatchMode):
    """Records every op that would make the host wait for a GPU (the CPU runs the same ops)."""

    def __init__(self):
        super().__init__()
        self.seen, self.paused = [], False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if not self.paused:
            bool_index = name in ("index", "index_put", "index_put_") and any(
                isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] or ()))
            if name in WAITING_OPS or bool_index:
                self.seen.append(name)
        return func(*args, **(kwargs or {}))


def _without_waits_in(optimizer, mode):
    """AdamW reads its step count with .item(), but that count lives on the host: not a device wait."""
    optimizer.register_step_pre_hook(lambda *_: setattr(mode, "paused", True))
    optimizer.register_step_post_hook(lambda *_: setattr(mode, "paused", False))


def _setup(preset="smoke", overrides=()):
    torch.manual_seed(0)
    cfg = make_config(preset, ["device=cpu", *overrides])
    agent = Agent(cfg, NUM_ACTIONS)
    replay = synthetic_replay(300, NUM_ACTIONS)
    rng = np.random.default_rng(0)
    return cfg, agent, replay, rng


@pytest.mark.parametrize("preset", ["smoke", "smoke_diamond"])
def test_world_model_and_actor_critic_updates_never_wait_for_the_device(preset):
    cfg, agent, replay, rng = _setup(preset)
    world_model = agent.world_model
    wm_optimizer, wm_scheduler = world_model.make_optimizer()
    ac_optimizer, ac_scheduler = agent.make_actor_critic_optimizer()
    batch = sample_training_batch(replay, cfg.world_model, rng).to_torch()
    contexts = sample_contexts(replay, cfg.actor_critic.batch_size, world_model.context_length, rng,
                               cfg.replay.sample_weights, "cpu")
    waits = HostWaits()
    _without_waits_in(wm_optimizer, waits)
    _without_waits_in(ac_optimizer, waits)
    with waits:
        wm_logs = world_model.training_step(batch, wm_optimizer, wm_scheduler, sync=False)
        ac_logs = actor_critic_training_step(world_model, agent.actor_critic, *contexts, cfg.actor_critic,
                                             ac_optimizer, ac_scheduler, sync=False)
    assert waits.seen == []
    assert all(isinstance(value, torch.Tensor) for value in {**wm_logs, **ac_logs}.values())
    # The detector does see waits: the notebook-friendly default reads the loss and the logs.
    with waits:
        world_model.training_step(batch, wm_optimizer, wm_scheduler)
    assert "_local_scalar_dense" in waits.seen


def test_categorical_sampling_draws_what_multinomial_draws():
    from jedi_core.nn.sampling import sample_categorical

    probabilities = torch.tensor([0.1, 0.2, 0.7]).expand(20_000, 3)
    ours = sample_categorical(probabilities, torch.Generator().manual_seed(0))
    reference = torch.multinomial(probabilities, 1, generator=torch.Generator().manual_seed(0)).squeeze(-1)
    assert torch.equal(ours, reference)  # the same algorithm: the same draws from the same generator
    frequencies = torch.bincount(ours, minlength=3) / len(ours)
    assert torch.allclose(frequencies, probabilities[0], atol=0.015)


def test_device_logs_read_back_as_floats_and_their_means():
    entries = [{"loss": torch.tensor(float(i)), "accuracy": torch.tensor(0.5 * i), "steps": 2.0} for i in range(4)]
    assert mean_logs(entries) == {"loss": 1.5, "accuracy": 0.75, "steps": 2.0}
    assert to_floats({"a": torch.tensor(0.25), "b": 3}) == {"a": 0.25, "b": 3.0}
    assert non_finite({"loss": float("nan"), "entropy": 1.0, "grad_norm": float("inf")}) == ["loss", "grad_norm"]


def test_masked_statistics_equal_boolean_indexing():
    generator = torch.Generator().manual_seed(0)
    values = torch.randn(3, 5, 2, 4, 4, generator=generator)
    mask = torch.rand(3, 5, generator=generator) > 0.3
    reference = values[mask].std(dim=0).mean()
    assert torch.allclose(masked_std(values, mask.float()), reference, atol=1e-6)


def test_sync_free_losses_equal_the_boolean_indexed_ones():
    """The masked means give the same reward/end and policy losses as indexing the real steps first."""
    import torch.nn.functional as F
    from torch.distributions import Categorical

    from jedi_core.nn.actor_critic import reinforce_loss

    cfg, agent, replay, rng = _setup()
    batch = sample_training_batch(replay, cfg.world_model, rng).to_torch()
    reward_end = agent.world_model.reward_end
    latents = agent.world_model.encode(batch.obs)
    mask = batch.mask_padding[:, :-1] & batch.mask_padding[:, 1:]
    assert not mask.all()  # the windows run past episode ends: there is padding to mask
    reward_logits, end_logits, _ = reward_end(latents, batch.actions)
    reference = (F.cross_entropy(reward_logits[mask], batch.rewards.sign().long()[mask] + 1)
                 + F.cross_entropy(end_logits[mask], batch.ends[mask].long()))
    loss, _ = reward_end.loss(latents, batch.actions, batch.rewards, batch.ends, mask)
    assert torch.allclose(loss, reference, atol=1e-6)

    generator = torch.Generator().manual_seed(1)
    logits, values = torch.randn(4, 6, 3, generator=generator), torch.randn(4, 6, generator=generator)
    actions, returns = torch.randint(3, (4, 6), generator=generator), torch.randn(4, 6, generator=generator)
    alive = torch.rand(4, 6, generator=generator) > 0.4
    loss, logs = reinforce_loss(logits, values, actions, returns, 0.01, mask=alive)
    distribution = Categorical(logits=logits[alive])
    advantages = returns[alive] - values[alive]
    reference = (-(distribution.log_prob(actions[alive]) * advantages).mean()
                 + F.mse_loss(values[alive], returns[alive]) - 0.01 * distribution.entropy().mean())
    assert torch.allclose(loss, reference, atol=1e-6)
    assert torch.allclose(logs["return_mean"], returns[alive].mean())


def _trained_like(agent):
    # The output conv and the actor start at zero (their outputs ignore every input); give them weights as
    # after training.
    torch.nn.init.normal_(agent.world_model.denoiser.net.conv_out.weight, std=0.05)
    torch.nn.init.normal_(agent.actor_critic.actor.weight, std=0.05)
    return agent


@pytest.mark.parametrize("preset", ["smoke", "smoke_diamond"])
def test_bf16_autocast_stays_within_tolerance_of_fp32(preset):
    cfg, agent, replay, rng = _setup(preset)
    agent = _trained_like(agent)
    batch = sample_training_batch(replay, cfg.world_model, rng).to_torch()
    contexts = sample_contexts(replay, 8, agent.world_model.context_length, rng, cfg.replay.sample_weights, "cpu")

    def bf16(fast_agent):
        fast_agent.world_model.precision = "bf16"

    deviation = output_deviation(agent, batch, contexts, bf16)
    assert all(0 < error < 0.05 for error in deviation.values()), deviation  # it does run in bf16, and close


def test_bf16_training_keeps_fp32_weights_and_follows_the_fp32_loss_curve():
    curves = {}
    for precision in ("fp32", "bf16"):
        cfg, agent, replay, rng = _setup(overrides=[f"performance.precision={precision}", "world_model.warmup_steps=1"])
        world_model = agent.world_model
        assert world_model.precision == precision
        optimizer, scheduler = world_model.make_optimizer()
        batch = sample_training_batch(replay, cfg.world_model, rng).to_torch()
        torch.manual_seed(1)
        curves[precision] = [world_model.training_step(batch, optimizer, scheduler)["loss"] for _ in range(25)]
        assert all(parameter.dtype == torch.float32 for parameter in world_model.parameters())
    fp32, bf16 = (np.mean(curves[p][-8:]) for p in ("fp32", "bf16"))
    assert bf16 < 0.9 * np.mean(curves["bf16"][:5])  # it learns
    assert abs(bf16 - fp32) < 0.02 * fp32  # as fp32 does


def test_compiled_agent_matches_eager_and_keeps_its_checkpoint_names():
    cfg, agent, replay, rng = _setup()
    agent = _trained_like(agent)
    batch = sample_training_batch(replay, cfg.world_model, rng).to_torch()
    contexts = sample_contexts(replay, 8, agent.world_model.context_length, rng, cfg.replay.sample_weights, "cpu")
    names = list(agent.state_dict())

    def compiled(fast_agent):
        # aot_eager traces every graph as inductor would (fullgraph: a graph break fails here), without
        # generating kernels, so it runs anywhere.
        for module in compiled_modules(fast_agent).values():
            module.compile(backend="aot_eager", fullgraph=True)

    deviation = output_deviation(agent, batch, contexts, compiled)
    assert all(error < 1e-5 for error in deviation.values()), deviation
    assert compile_agent(agent, "off") == []
    assert compile_agent(agent, "reduce-overhead", backend="aot_eager") == list(compiled_modules(agent))
    assert list(agent.state_dict()) == names


def test_a_diverged_update_stops_the_run_at_the_end_of_its_epoch(tmp_path, monkeypatch):
    """Updates no longer check each loss, so the trainer checks the epoch's logs before it saves anything."""
    from jedi_core.trainer import Trainer
    from jedi_core.world_model import WorldModel

    cfg = make_config("smoke", ["env.kind=toy", "env_steps=200", "training.initial_random_steps=50"])
    original, calls = WorldModel.forward, {"n": 0}
    fail_at = cfg.training.first_epoch_world_model_updates + cfg.training.world_model_updates + 1  # in epoch 3

    def diverging(self, batch):
        calls["n"] += 1
        loss, logs = original(self, batch)
        return (loss * float("nan"), logs) if calls["n"] == fail_at else (loss, logs)

    monkeypatch.setattr(WorldModel, "forward", diverging)
    with pytest.raises(FloatingPointError, match="epoch 3: non-finite .*loss"):
        Trainer(cfg, tmp_path, quiet=True).run()
    resumed = Trainer(cfg, tmp_path, quiet=True)
    resumed.load_checkpoint()
    assert resumed.counters["epoch"] == 2
    assert all(torch.isfinite(p).all() for p in resumed.agent.parameters())


def test_a_run_resumes_with_the_fast_path_switched_on(tmp_path):
    from jedi_core.config import PerformanceConfig, from_dict, to_dict
    from jedi_core.trainer import Trainer

    toy = ["env.kind=toy", "env_steps=150", "training.initial_random_steps=50"]
    Trainer(make_config("smoke", toy), tmp_path, quiet=True).run()
    (tmp_path / "final_scores.json").unlink()  # pretend it stopped before the end
    fast = Trainer(make_config("smoke", [*toy, "performance.precision=bf16"]), tmp_path, quiet=True)
    fast.load_checkpoint()  # a resumable change: no IncompatibleCheckpoint
    assert fast.agent.world_model.precision == "bf16"
    # A run saved before the section existed reads as its defaults, so it resumes too.
    older = to_dict(make_config("smoke", toy))
    del older["performance"]
    assert from_dict(older).performance == PerformanceConfig()


def test_an_unknown_precision_is_a_clear_error():
    from jedi_core.config import ConfigError

    with pytest.raises(ConfigError, match="performance.precision: 'fp16' is not allowed; choose one of: fp32, bf16"):
        make_config("smoke", ["performance.precision=fp16"])


def test_batches_for_a_gpu_are_copied_from_pinned_memory(monkeypatch):
    """On CUDA the host copy is pinned so it overlaps compute; a CPU batch is left where it is."""
    _, _, replay, rng = _setup()
    pinned = []
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self: pinned.append(self.shape) or self)
    monkeypatch.setattr(torch.Tensor, "to", lambda self, *args, **kwargs: self)
    batch = replay.sample(2, 3, rng)
    batch.to_torch("cpu")
    assert pinned == []
    moved = batch.to_torch("cuda")
    assert len(pinned) == 5 and isinstance(moved, TorchBatch)  # obs, actions, rewards, ends, mask


def test_the_trainer_reads_logs_per_chunk_and_stops_within_the_chunk_that_diverged(tmp_path):
    from jedi_core.trainer import Trainer

    trainer = Trainer.__new__(Trainer)  # only the update loop is exercised
    trainer.counters, trainer.run_dir = {"epoch": 1}, tmp_path
    calls = []

    def update():
        calls.append(1)
        return {"loss": torch.tensor(float(len(calls)))}

    assert trainer._updates(update, 450, chunk=200) == pytest.approx({"loss": np.mean(np.arange(1, 451))})
    calls.clear()

    def diverging():
        calls.append(1)
        return {"loss": torch.tensor(float("nan") if len(calls) == 5 else 1.0)}

    with pytest.raises(FloatingPointError, match="epoch 1: non-finite loss"):
        trainer._updates(diverging, 10_000, chunk=200)
    assert len(calls) == 200  # not the epoch's 10,000
