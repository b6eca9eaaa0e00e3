"""jedi_core.replay: episodes, segments and batches, the sampling rules, and the replay on disk."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from jedi_core.replay import (
    REPLAY_INDEX,
    Batch,
    Episode,
    ReplayBuffer,
    ReplayFileError,
    TorchBatch,
    frames_to_float,
    recency_weights,
    sample_windows,
)


def _frame(value):
    return np.full((64, 64, 3), value % 256, np.uint8)


def _episode(num_steps, first_value=0, finish=True):
    """Frame t is filled with first_value + t, so a frame says where it came from."""
    episode = Episode(_frame(first_value), capacity=2)
    for t in range(num_steps):
        last = finish and t == num_steps - 1
        episode.append(action=t % 3, reward=float(t), next_obs=_frame(first_value + t + 1),
                       terminated=last, life_loss=t == 1)
    return episode


def _buffer(lengths, open_last=False):
    buffer = ReplayBuffer()
    for i, length in enumerate(lengths):
        still_open = open_last and i == len(lengths) - 1
        buffer.add_episode(_episode(length, first_value=10 * i, finish=not still_open))
    return buffer


def test_growing_episode_keeps_every_transition():
    episode = _episode(37, finish=False)
    assert not episode.finished and episode.num_steps == 37 and len(episode.obs) == 38
    assert [frame[0, 0, 0] for frame in episode.obs] == list(range(38))
    episode.append(0, 0.0, _frame(99), truncated=True)
    assert episode.finished and episode.truncated
    with pytest.raises(RuntimeError, match="finished"):
        episode.append(0, 0.0, _frame(0))


def test_storage_is_uint8_and_100k_frames_fit_in_1_3_gb():
    episode = _episode(1000)
    bytes_per_frame = episode.nbytes / len(episode.obs)
    assert episode.obs.dtype == np.uint8
    assert bytes_per_frame * 100_000 < 1.3e9


def test_segment_pads_before_the_start_with_a_mask():
    episode = _episode(10)
    segment = episode.segment(start=-3, num_steps=5)
    assert segment.mask_padding.tolist() == [False, False, False, True, True, True]
    assert segment.obs[:3].max() == 0 and [f[0, 0, 0] for f in segment.obs[3:]] == [0, 1, 2]
    assert segment.actions.tolist() == [0, 0, 0, 0, 1]
    assert segment.rewards.tolist() == [0, 0, 0, 0, 1]
    assert segment.life_loss.tolist() == [False, False, False, False, True]


def test_segment_pads_after_the_end_only_when_asked():
    episode = _episode(4)
    with pytest.raises(ValueError, match="pad_after"):
        episode.segment(start=2, num_steps=4)
    segment = episode.segment(start=2, num_steps=4, pad_after=True)
    assert segment.mask_padding.tolist() == [True, True, True, False, False]
    assert segment.terminated.tolist() == [False, True, False, False]
    with pytest.raises(ValueError, match="holds no frame"):
        episode.segment(start=-6, num_steps=5)
    only_the_first_frame = episode.segment(start=-3, num_steps=3)  # a context [pad, pad, pad, frame 0]
    assert only_the_first_frame.mask_padding.tolist() == [False, False, False, True]
    with pytest.raises(ValueError, match="holds no frame"):
        episode.segment(start=5, num_steps=2, pad_after=True)


def test_batch_masks_ends_and_torch_conversion():
    batch = Batch.stack([_episode(6).segment(-1, 3), _episode(6).segment(3, 3)])
    assert batch.obs.shape == (2, 4, 64, 64, 3)
    assert batch.ends.tolist() == [[False, False, True], [False, False, True]]  # life loss at t=1, game over
    torch_batch = batch.to_torch("cpu")
    assert torch_batch.transition_mask.tolist() == [[False, True, True], [True, True, True]]
    assert torch_batch.obs.shape == (2, 4, 3, 64, 64) and torch_batch.obs.dtype == torch.float32
    assert torch_batch.obs.min() >= -1 and torch_batch.obs.max() <= 1
    white = frames_to_float(torch.full((1, 2, 2, 3), 255, dtype=torch.uint8))
    assert torch.equal(white, torch.ones(1, 3, 2, 2))
    # Padding is DIAMOND's 0.0 in float space (mid-grey); a real frame of uint8 0 stays black (-1).
    assert torch.equal(torch_batch.obs[0, 0], torch.zeros(3, 64, 64))
    assert torch.equal(torch_batch.obs[0, 1], torch.full((3, 64, 64), -1.0))  # the episode's first frame, 0


def test_sampled_windows_end_inside_the_episode_and_pad_only_before():
    buffer = _buffer([3, 20, 7])
    batch = sample_windows(buffer, batch_size=256, num_steps=5, rng=np.random.default_rng(0))
    assert batch.mask_padding[:, -1].all()  # the last frame is always real
    # Padding, when there is any, is a prefix: once a frame is real, all later ones are.
    assert (np.diff(batch.mask_padding.astype(int), axis=1) >= 0).all()
    assert (~batch.mask_padding[:, 0]).any()  # short episodes do need padding
    padded = sample_windows(buffer, batch_size=256, num_steps=5, rng=np.random.default_rng(0), past_end=True)
    assert (~padded.mask_padding[:, -1]).any() and padded.mask_padding.any(axis=1).all()


def _diamond_window_probabilities(frames, length, past_end):
    """DIAMOND's BatchSampler written out for one episode of ``frames`` frames (steps, past the end):
    P(window start). A step t is drawn uniformly; past the end, start = t - U{0..length-1}; otherwise the
    window of ``length`` frames stops (exclusive) at min(frames, t + 1 + U{0..length-1})."""
    probabilities = {}
    for t in range(frames):
        for offset in range(length):
            start = t - offset if past_end else min(frames, t + 1 + offset) - length
            probabilities[start] = probabilities.get(start, 0.0) + 1 / (frames * length)
    return probabilities


@pytest.mark.parametrize("steps, window, past_end", [(50, 5, False), (4, 5, False), (50, 18, True),
                                                     (7, 18, True)])
def test_windows_sit_where_diamonds_batch_sampler_puts_them(steps, window, past_end):
    """Diffusion windows (``window`` transitions, ``window + 1`` frames, ending inside the episode) lean
    towards its end; reward/end windows hold a uniformly drawn transition at a uniform position."""
    buffer = ReplayBuffer()
    buffer.add_episode(_episode(steps))  # frame t holds t, so a window's first frame names its start
    draws = 20_000
    batch = sample_windows(buffer, draws, window, np.random.default_rng(0), past_end=past_end)
    first_real = batch.mask_padding.argmax(1)
    starts = batch.obs[np.arange(draws), first_real, 0, 0, 0].astype(int) - first_real
    if past_end:  # DIAMOND counts transitions: the window's steps
        expected = _diamond_window_probabilities(steps, window, past_end=True)
    else:  # and here frames: an episode of T steps has T + 1 of them
        expected = _diamond_window_probabilities(steps + 1, window + 1, past_end=False)
    seen = {start: count / draws for start, count in zip(*np.unique(starts, return_counts=True), strict=True)}
    assert set(seen) <= set(expected)
    for start, probability in expected.items():
        assert abs(seen.get(start, 0.0) - probability) < 4 * np.sqrt(probability / draws) + 1e-3, start
    if not past_end and steps == 50:  # DIAMOND's lean: 6-frame windows end on the last frame 6.9% of the time
        ends_last = (starts + window == steps).mean()
        assert abs(ends_last - expected[steps - window]) < 0.01 and expected[steps - window] > 0.06


def _ended_by_a_lost_life(num_steps, first_value):
    episode = Episode(_frame(first_value), capacity=2)
    for t in range(num_steps):
        episode.append(action=0, reward=0.0, next_obs=_frame(first_value + t + 1),
                       life_loss=t == num_steps - 1)
    episode.finish_at_life_loss()
    return episode


def test_imagination_contexts_never_end_where_a_game_or_a_life_was_lost():
    """A context ends on any frame imagination can go on from: never on the frame a game over (episode 0)
    or a lost life (episode 1) left; the last frame of a cut-short episode (2) is allowed."""
    buffer = ReplayBuffer()
    buffer.add_episode(_episode(3))  # terminated; frame t of episode i holds 10 * i + t
    buffer.add_episode(_ended_by_a_lost_life(7, first_value=10))
    truncated = _episode(5, first_value=20, finish=False)
    truncated.finish_truncated()
    buffer.add_episode(truncated)
    assert [episode.ends_in_a_loss for episode in buffer.episodes] == [True, True, False]
    for context in (False, True):
        batch = sample_windows(buffer, 3_000, 3, np.random.default_rng(0), context=context)
        last_value = batch.obs[:, -1, 0, 0, 0].astype(int)
        episode, step = last_value // 10, last_value % 10
        on_the_loss = step == np.array([3, 7, 5])[episode]
        assert on_the_loss[episode < 2].any() != context
        assert on_the_loss[episode == 2].any()  # a cut-short episode's last frame stays a context end
    # Every other end frame is still drawn, the first one included.
    assert set(step[episode == 0]) == {0, 1, 2}


def test_recency_weights_give_the_newest_quarter_its_share():
    weights = recency_weights([5] * 40)
    assert weights[30:].sum() == pytest.approx(0.7) and weights[:10].sum() == pytest.approx(0.1)
    buffer = ReplayBuffer()
    for index in range(40):  # every reward of episode i is i, so a sampled step names its episode
        episode = buffer.new_episode(_frame(0))
        for t in range(5):
            episode.append(0, float(index), _frame(t), terminated=t == 4)
    draws = 4000
    batch = sample_windows(buffer, batch_size=draws, num_steps=1, rng=np.random.default_rng(1), past_end=True)
    share = (batch.rewards[:, 0] >= 30).mean()
    assert abs(share - 0.7) < 4 * np.sqrt(0.7 * 0.3 / draws)


def _diamond_recency_reference(num_episodes, group_weights=(0.1, 0.1, 0.1, 0.7)):
    """Written from DIAMOND's rule: groups of N // k episodes, oldest first, the N % k left over in the newest
    group; a group's weight shared equally by its episodes."""
    k = len(group_weights)
    sizes = [num_episodes // k] * k
    sizes[-1] += num_episodes % k
    shares = [np.full(size, weight / size) for size, weight in zip(sizes, group_weights, strict=True)]
    return np.concatenate(shares)


@pytest.mark.parametrize("num_episodes", range(1, 61))
def test_recency_weights_match_diamond_for_1_to_60_episodes(num_episodes):
    lengths = [7] * num_episodes
    weights = recency_weights(lengths)
    if num_episodes < 4:  # fewer episodes than groups: every step equally likely
        assert np.allclose(weights, 1 / num_episodes)
    else:
        assert np.allclose(weights, _diamond_recency_reference(num_episodes))
    assert weights.sum() == pytest.approx(1.0)


def test_recency_leftovers_go_to_the_newest_group():
    # 5 episodes: groups of 1, 1, 1 and 2; the newest two share 0.7 (DIAMOND), so the newest alone gets 0.35.
    assert recency_weights([3] * 5).tolist() == pytest.approx([0.1, 0.1, 0.1, 0.35, 0.35])
    # 7 episodes: groups of 1, 1, 1 and 4.
    assert recency_weights([3] * 7)[-1] == pytest.approx(0.175)


def test_recency_weights_edge_cases():
    assert recency_weights([2, 6]).tolist() == [0.25, 0.75]  # fewer episodes than groups: by steps
    assert recency_weights([0, 4, 4, 4, 4])[0] == 0  # an empty episode is never drawn
    with pytest.raises(ValueError, match="no transition"):
        recency_weights([0, 0])


def test_reward_sign_counts_and_the_minority_count():
    buffer = ReplayBuffer()
    rewards = [[0.0, 0.0, 2.0, -1.0], [0.0, 0.5, 0.0]]
    for episode_rewards in rewards:
        episode = buffer.new_episode(_frame(0))
        for reward in episode_rewards:
            episode.append(action=0, reward=reward, next_obs=_frame(1))
    assert buffer.reward_sign_counts() == {-1: 1, 0: 4, 1: 2}
    assert buffer.minority_reward_count() == 3  # all but the commonest sign (0)
    episode = buffer.new_episode(_frame(0))
    for _ in range(6):
        episode.append(action=0, reward=1.0, next_obs=_frame(1))
    assert buffer.minority_reward_count() == 1 + 4  # +1 is now the commonest: -1s and 0s are the minority
    assert ReplayBuffer().minority_reward_count() == 0


def test_round_trip_to_disk_including_an_open_episode(tmp_path):
    buffer = _buffer([5, 9, 4], open_last=True)
    buffer.save(tmp_path)
    loaded = ReplayBuffer.load(tmp_path)
    assert len(loaded) == 3 and loaded.num_steps == buffer.num_steps
    for original, copy in zip(buffer.episodes, loaded.episodes, strict=True):
        for name in ("obs", "actions", "rewards", "terminated", "life_loss"):
            np.testing.assert_array_equal(getattr(original, name), getattr(copy, name))
        assert (original.finished, original.truncated) == (copy.finished, copy.truncated)
    loaded.episodes[-1].append(1, 1.0, _frame(7), terminated=True)  # a resumed open episode keeps growing
    assert loaded.episodes[-1].num_steps == 5 and loaded.episodes[-1].finished


def test_incremental_save_rewrites_only_changed_episodes(tmp_path):
    buffer = _buffer([5, 9, 4], open_last=True)
    buffer.save(tmp_path)
    mtimes = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("episode_*.npz")}
    buffer.episodes[-1].append(0, 0.0, _frame(1))
    buffer.save(tmp_path)
    files = sorted(p.name for p in tmp_path.glob("episode_*.npz"))
    assert len(files) == 3  # the open episode's old file is gone
    for name in files[:2]:
        assert (tmp_path / name).stat().st_mtime_ns == mtimes[name]
    assert ReplayBuffer.load(tmp_path).episodes[-1].num_steps == 5


def test_a_crash_before_the_index_is_written_leaves_the_previous_replay(tmp_path):
    buffer = _buffer([5, 6])
    buffer.save(tmp_path)
    (tmp_path / "episode_000002_000003.npz.tmp").write_bytes(b"half a file")  # an interrupted write
    (tmp_path / "episode_000002_000003.npz").write_bytes(b"written, but the index never was")
    loaded = ReplayBuffer.load(tmp_path)
    assert len(loaded) == 2 and loaded.num_steps == 11


def test_a_truncated_episode_file_is_refused(tmp_path):
    _buffer([5, 9]).save(tmp_path)
    victim = sorted(tmp_path.glob("episode_*.npz"))[1]
    victim.write_bytes(victim.read_bytes()[:-100])
    with pytest.raises(ReplayFileError, match=f"{victim.name} is truncated or damaged"):
        ReplayBuffer.load(tmp_path)


def test_a_corrupted_episode_or_index_is_refused(tmp_path):
    _buffer([5]).save(tmp_path)
    victim = next(tmp_path.glob("episode_*.npz"))
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(ReplayFileError, match="checksum"):
        ReplayBuffer.load(tmp_path)
    index = tmp_path / REPLAY_INDEX
    index.write_text(index.read_text()[:20])
    with pytest.raises(ReplayFileError, match="damaged"):
        ReplayBuffer.load(tmp_path)
    index.write_text(json.dumps({"format": "other", "version": 9, "episodes": []}))
    with pytest.raises(ReplayFileError, match="version"):
        ReplayBuffer.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="no replay"):
        ReplayBuffer.load(tmp_path / "nowhere")


def test_bad_frames_are_refused():
    with pytest.raises(ValueError, match="uint8"):
        Episode(np.zeros((64, 64, 3), np.float32))


def test_batches_for_a_gpu_are_copied_from_pinned_memory(monkeypatch):
    """On CUDA the host copy is pinned so it overlaps compute; a CPU batch is left where it is."""
    batch = sample_windows(_buffer([20, 9]), 2, 3, np.random.default_rng(0))
    pinned = []
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self: pinned.append(self.shape) or self)
    monkeypatch.setattr(torch.Tensor, "to", lambda self, *args, **kwargs: self)
    batch.to_torch("cpu")
    assert pinned == []
    moved = batch.to_torch("cuda")
    assert len(pinned) == 5 and isinstance(moved, TorchBatch)  # obs, actions, rewards, ends, mask


def test_training_batches_and_imagination_contexts_come_from_the_sampling_rules():
    from jedi_core.presets import make_config
    from jedi_core.replay import sample_contexts, sample_diffusion_batch, sample_reward_end_batch

    buffer = _buffer([3, 20, 7])
    cfg = make_config("smoke").world_model
    batch = sample_reward_end_batch(buffer, cfg, np.random.default_rng(0))
    assert batch.obs.shape == (cfg.batch_size, cfg.segment_steps + 1, 64, 64, 3)
    many = sample_reward_end_batch(buffer, dataclasses.replace(cfg, batch_size=256), np.random.default_rng(0))
    assert (~many.mask_padding[:, -1]).any()  # windows may run past an episode's end
    diffusion = sample_diffusion_batch(buffer, dataclasses.replace(cfg, batch_size=256),
                                       np.random.default_rng(0))
    assert diffusion.obs.shape[1] == cfg.denoiser.context_length + cfg.num_targets
    assert diffusion.mask_padding[:, -1].all()  # every window ends on a real frame
    buffer = _buffer([3, 7])  # terminated episodes; frame t of episode i holds 10 * i + t
    frames, actions = sample_contexts(buffer, 64, 4, np.random.default_rng(0), (0.1, 0.1, 0.1, 0.7), "cpu")
    assert frames.shape == (64, 4, 3, 64, 64) and frames.dtype == torch.float32 and actions.shape == (64, 3)
    last = ((frames[:, -1, 0, 0, 0] + 1) * 127.5).round().long()
    episode, step = last // 10, last % 10
    assert not (step == torch.tensor([3, 7])[episode]).any()  # never on a terminal frame
