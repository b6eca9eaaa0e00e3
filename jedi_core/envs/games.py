"""The 26 Atari100k games and the size of their minimal action sets.

Kept free of gymnasium/ale-py imports so configs can validate a game name cheaply.
"""

from __future__ import annotations

import difflib

#: Game name -> number of actions in ALE's minimal action set (``full_action_space=False``).
ATARI100K_GAMES: dict[str, int] = {
    "Alien": 18, "Amidar": 10, "Assault": 7, "Asterix": 9, "BankHeist": 18, "BattleZone": 18,
    "Boxing": 18, "Breakout": 4, "ChopperCommand": 18, "CrazyClimber": 9, "DemonAttack": 6,
    "Freeway": 3, "Frostbite": 18, "Gopher": 8, "Hero": 18, "Jamesbond": 18, "Kangaroo": 18,
    "Krull": 18, "KungFuMaster": 14, "MsPacman": 9, "Pong": 6, "PrivateEye": 18, "Qbert": 6,
    "RoadRunner": 18, "Seaquest": 18, "UpNDown": 6,
}


class UnknownGameError(ValueError):
    """A game name outside the Atari100k list; the message lists the valid names."""


def canonical_game_name(name: str) -> str:
    """Return the canonical spelling of an Atari100k game (case-insensitive), or raise a helpful error."""
    by_lower = {game.lower(): game for game in ATARI100K_GAMES}
    key = name.strip().lower().removeprefix("ale/").split("-")[0].replace("noframeskip", "").replace("_", "")
    if key in by_lower:
        return by_lower[key]
    close = difflib.get_close_matches(key, list(by_lower), n=1, cutoff=0.4)
    hint = f"did you mean {by_lower[close[0]]!r}? " if close else ""
    raise UnknownGameError(f"unknown game {name!r}: {hint}"
                           f"the Atari100k games are: {', '.join(ATARI100K_GAMES)}")


def num_actions(game: str) -> int:
    """Size of the game's minimal action set."""
    return ATARI100K_GAMES[canonical_game_name(game)]
