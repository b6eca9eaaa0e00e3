"""The reference lines of the notebooks' "your turn" cells. Write yours first.

A "your turn" cell has the learner write the lines that carry an idea: the Euler step (02), the switch (03),
the lambda-return (04), the human-normalised score and the learns-or-not test (05). The cell after it checks
them against ``jedi_core``. The learner's function is decorated with :func:`exercise`; with
``JEDI_SOLUTIONS=1`` in the environment (the tests and ``tools/reference_figures.py`` set it) the reference of
the same name below replaces it, so the notebook runs end to end without anyone's answer.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor


def euler_step(x: Tensor, guess: Tensor, sigma: Tensor, next_sigma: Tensor) -> Tensor:
    """One Euler step of the probability-flow ODE, dx/dsigma = (x - D(x; sigma)) / sigma, from sigma to
    next_sigma (``guess`` is D(x; sigma))."""
    return x + (next_sigma - sigma) * (x - guess) / sigma


def switch_by_hand(prediction: Tensor, encoded: Tensor, p: float) -> tuple[Tensor, Tensor]:
    """One coin for the whole batch: with probability p every sequence reads its own prediction, else the
    encoder's latents. Returns the chosen latents and the coin."""
    coin = torch.rand(()) < p
    return torch.where(coin, prediction, encoded), coin


def lambda_returns_by_hand(rewards: Tensor, ends: Tensor, next_values: Tensor, gamma: float, lam: float
                           ) -> Tensor:
    """(B, H) lambda-returns, from the last step back: the last step bootstraps from the value alone, every
    earlier one mixes the value and the next step's return."""
    returns = torch.empty_like(rewards)
    following = next_values[:, -1]
    for t in reversed(range(rewards.shape[1])):
        last = t == rewards.shape[1] - 1
        bootstrap = next_values[:, t] if last else (1 - lam) * next_values[:, t] + lam * following
        returns[:, t] = rewards[:, t] + gamma * (1 - ends[:, t]) * bootstrap
        following = returns[:, t]
    return returns


def hns_by_hand(score: float, random_score: float, human_score: float) -> float:
    """The human-normalised score: 0 at random play's score, 1 at the human tester's."""
    return (score - random_score) / (human_score - random_score)


def learns_by_hand(returns: Sequence[float], random_score: float, standard_errors: float = 3.0) -> bool:
    """Whether the mean of ``returns`` beats ``random_score`` by more than ``standard_errors`` standard errors
    of that mean (sample standard deviation / sqrt(number of episodes))."""
    values = np.asarray(returns, dtype=float)
    standard_error = values.std(ddof=1) / np.sqrt(len(values))
    return bool(values.mean() - random_score > standard_errors * standard_error)


REFERENCES: dict[str, Callable] = {function.__name__: function
                                   for function in (euler_step, switch_by_hand, lambda_returns_by_hand,
                                                    hns_by_hand, learns_by_hand)}


def exercise(function: Callable) -> Callable:
    """The learner's ``function``; with ``JEDI_SOLUTIONS=1``, the reference of the same name."""
    if os.environ.get("JEDI_SOLUTIONS", "0") == "1":
        return REFERENCES[function.__name__]
    return function
