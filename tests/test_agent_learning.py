"""JEDI learns: on the toy game, on a 2-core CPU, within a bounded number of environment steps.

A learning test, not a timing test: the untrained agent scores what the random policy scores, and the
trained one reaches 90% of the optimal return over the final 100 evaluation episodes. The schedule is the
``toy`` preset's (its number of env steps is the bound); the seed is fixed.
"""

import json

import numpy as np

from jedi_core.envs.toy import CatchEnv, random_policy_return
from jedi_core.presets import make_config
from jedi_core.training.collect import evaluate
from jedi_core.training.loop import Trainer
from jedi_core.training.run_dir import METRICS_FILE


def test_jedi_learns_the_toy_game(tmp_path):
    cfg = make_config("toy", ["seed=0"])
    trainer = Trainer(cfg, tmp_path, quiet=True)
    before = evaluate(trainer.agent, cfg, episodes=200, seed=123)
    # Zero-initialised heads: a uniform policy, blind to the ball, so it scores the random return.
    assert abs(np.mean(before) - random_policy_return()) < 0.2

    scores = trainer.run()
    after = np.mean(scores["episode_returns"])
    assert len(scores["episode_returns"]) == 100 and scores["env_steps"] == cfg.env_steps
    assert after >= 0.9 * CatchEnv.optimal_return, after
    lines = (tmp_path / METRICS_FILE).read_text().splitlines()
    periodic = [json.loads(line).get("eval_return") for line in lines]
    assert any(value is not None for value in periodic)
