"""Root pytest hooks: notebooks run in smoke mode unless JEDI_SMOKE is set, and their "your turn" cells run
the reference lines (notebooks/solutions.py) unless JEDI_SOLUTIONS is set (their kernels inherit both)."""

import os


def pytest_configure(config):
    os.environ.setdefault("JEDI_SMOKE", "1")
    os.environ.setdefault("JEDI_SOLUTIONS", "1")
    os.environ.setdefault("MPLBACKEND", "Agg")
