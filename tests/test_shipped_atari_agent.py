"""The shipped Atari agent (``assets/krull_cpu_agent.pt``, for notebook 04 and the data-flow drawing): it
loads as plain data, is small enough for the repository, draws what it imagines, and plays as well as its
recorded final evaluation says (a few episodes, within noise)."""

from pathlib import Path

import numpy as np
import torch

from jedi_core.analysis.metrics import load_reference
from jedi_core.training.checkpoint import AGENT_FILE_KIND, load_agent
from jedi_core.training.collect import evaluate

SHIPPED = Path(__file__).resolve().parents[1] / "assets" / "krull_cpu_agent.pt"
#: Episodes replayed here: enough to catch a file that plays unlike its record, few enough for CI.
EPISODES = 4


def test_the_shipped_atari_agent_is_a_small_plain_data_file_with_its_run_record():
    assert SHIPPED.stat().st_size < 10 * 2**20
    assert torch.load(SHIPPED, weights_only=True)["kind"] == AGENT_FILE_KIND
    cfg, agent, info = load_agent(SHIPPED, device="cpu")
    assert (cfg.env.kind, cfg.env.game_name, cfg.preset, cfg.method) == ("atari", "Krull", "cpu", "jedi")
    assert agent.world_model.probe is not None  # notebooks draw its imagination
    assert info["counters"]["env_steps"] == cfg.env_steps
    assert len(info["final_scores"]["episode_returns"]) == cfg.eval_episodes
    assert info["metrics"][-1]["env_steps"] == cfg.env_steps  # every epoch's record came with it
    assert any("eval_return" in record for record in info["metrics"])  # and so did the learning curve


def test_the_shipped_atari_agent_reproduces_its_recorded_score_within_noise():
    cfg, agent, info = load_agent(SHIPPED, device="cpu")
    recorded = np.array(info["final_scores"]["episode_returns"])
    torch.manual_seed(0)
    returns = evaluate(agent, cfg, EPISODES, seed=123)
    # Four standard errors of a mean of EPISODES episodes, with the recorded episodes' spread.
    tolerance = 4 * recorded.std(ddof=1) / np.sqrt(EPISODES)
    assert abs(np.mean(returns) - recorded.mean()) < tolerance, (returns, recorded.mean(), tolerance)
    assert recorded.mean() > load_reference().random["Krull"]  # what was shipped is better than random play
