"""The install files agree with each other, notebooks are stripped, and the code passes the linter."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject_requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    requirements = list(project["dependencies"])
    for extra in ("notebooks", "test", "dev"):
        requirements += [r for r in extras[extra] if not r.startswith("jedi-core")]
    return {_name(r): r.replace(" ", "") for r in requirements}


def _environment_requirements() -> tuple[dict[str, str], list[str]]:
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(item["pip"] for item in environment["dependencies"] if isinstance(item, dict))
    packages = [r for r in pip_section if not r.startswith("-e")]
    return {_name(r): r.replace(" ", "") for r in packages}, [r for r in pip_section if r.startswith("-e")]


def test_environment_yml_lists_the_same_dependencies_as_pyproject():
    from_pyproject = _pyproject_requirements()
    from_environment, editable = _environment_requirements()
    assert from_environment == from_pyproject
    assert editable == ["-e .[dev]"]


def test_environment_yml_uses_conda_forge_only():
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert environment["channels"] == ["conda-forge"]


def test_constraints_pin_torch_inside_the_pyproject_range():
    from packaging.requirements import Requirement

    pins = [line for line in (ROOT / "constraints.txt").read_text().splitlines() if line and line[0] != "#"]
    torch_pin = next(Requirement(p) for p in pins if _name(p) == "torch")
    torch_range = Requirement(_pyproject_requirements()["torch"])
    (pinned_version,) = [spec.version for spec in torch_pin.specifier]
    assert torch_range.specifier.contains(pinned_version)


def test_ci_runs_the_readme_commands():
    readme, ci = (ROOT / "README.md").read_text(), (ROOT / ".ci/run").read_text()
    install = 'python -m pip install -c constraints.txt -e ".[dev]"'
    assert install in readme and install in ci
    assert "python -m pytest" in readme and "python -m pytest" in ci


def test_github_runs_ci_on_every_push_and_pull_request():
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    assert {"push", "pull_request"} <= set(workflow[True])  # YAML 1.1 reads the key "on" as True
    (job,) = workflow["jobs"].values()
    assert any(step.get("run") == "bash .ci/run" for step in job["steps"])
    python = next(step["with"]["python-version"] for step in job["steps"]
                  if "setup-python" in step.get("uses", ""))
    oldest = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"].lstrip(">=")
    assert tuple(map(int, oldest.split("."))) <= tuple(map(int, python.split(".")))


@pytest.mark.parametrize("notebook", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_notebooks_are_committed_without_outputs_and_every_cell_has_an_id(notebook):
    cells = json.loads(notebook.read_text())["cells"]
    for cell in cells:
        if cell["cell_type"] == "code":
            stripped = cell["outputs"] == [] and cell["execution_count"] is None
            assert stripped, f"strip the outputs of {notebook.name}"
    # nbformat 4.5 requires cell ids (nbformat warns, and will refuse, where one is missing).
    ids = [cell.get("id") for cell in cells]
    assert None not in ids and len(set(ids)) == len(ids), f"{notebook.name}: give every cell a unique id"


def test_package_data_ships_the_published_scores():
    from jedi_core.analysis.metrics import load_reference

    assert len(load_reference().games) == 26


def test_code_passes_ruff():
    paths = ["jedi_core", "tests", "benchmarks", "tools", "conftest.py"]
    result = subprocess.run([sys.executable, "-m", "ruff", "check", *paths],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_package_keeps_its_rooms_small():
    """At most 10 modules at the package root (beside __init__ and __main__), no module over 400 lines."""
    package = Path(__file__).resolve().parents[1] / "jedi_core"
    root_modules = [path.name for path in package.glob("*.py")
                    if path.name not in ("__init__.py", "__main__.py")]
    assert len(root_modules) <= 10, f"{len(root_modules)} modules at the root: {sorted(root_modules)}"
    long = {str(path.relative_to(package)): n for path in package.rglob("*.py")
            if (n := len(path.read_text().splitlines())) > 400}
    assert not long, f"modules over 400 lines: {long}"
