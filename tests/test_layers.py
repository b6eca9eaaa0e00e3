"""The package's import rules: the layers, the rules beside them and no cycles, as import-linter contracts
in pyproject.toml (``[tool.importlinter]``), checked here by running ``lint-imports``."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LINT_IMPORTS = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(no_logo=True))"


def test_the_imports_keep_the_contracts():
    result = subprocess.run([sys.executable, "-c", LINT_IMPORTS], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, "lint-imports failed:\n" + result.stdout + result.stderr
