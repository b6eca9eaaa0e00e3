"""Root pytest hooks: notebooks run in smoke mode unless JEDI_SMOKE is set (their kernels inherit it)."""

import os


def pytest_configure(config):
    os.environ.setdefault("JEDI_SMOKE", "1")
    os.environ.setdefault("MPLBACKEND", "Agg")
