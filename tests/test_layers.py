"""The package's layers: no module imports a module of a higher layer.

Read from the source with ``ast``: every ``import jedi_core...`` and ``from jedi_core... import ...``, those
inside functions included, those under ``if TYPE_CHECKING:`` excluded (annotations only, never run).
``from jedi_core.x import y`` imports the module ``jedi_core.x.y`` when that is a module, else
``jedi_core.x``.

Lowest first; a module may import its own layer or lower. ``name.*`` is the package ``name`` and every module
under it; an exact name wins over a pattern. A module file that no entry names fails the test, so a new
module forces a decision.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIR = ROOT / "jedi_core"

LAYERS: list[tuple[str, ...]] = [
    ("jedi_core.configlib", "jedi_core.runtime", "jedi_core.envs.games", "jedi_core.nn.ops"),
    ("jedi_core", "jedi_core.config", "jedi_core.presets", "jedi_core.nn.*", "jedi_core.envs",
     "jedi_core.envs.atari", "jedi_core.envs.toy"),
    ("jedi_core.replay.*", "jedi_core.optim", "jedi_core.cuda_graphs"),
    ("jedi_core.world_model",),
    ("jedi_core.imagination", "jedi_core.agent"),
    ("jedi_core.training.*",),
    ("jedi_core.analysis.*", "jedi_core.sweep.*"),
    ("jedi_core.__main__",),
]


# ----------------------------------------------------------------------------------------------
# The checker


def layer_of(module: str, layers=LAYERS) -> int | None:
    """The layer of a dotted module name: an exact entry, else the longest matching ``package.*``."""
    for index, entries in enumerate(layers):
        if module in entries:
            return index
    best, best_length = None, -1
    for index, entries in enumerate(layers):
        for entry in entries:
            if entry.endswith(".*"):
                package = entry[:-2]
                if (module == package or module.startswith(package + ".")) and len(package) > best_length:
                    best, best_length = index, len(package)
    return best


def package_modules(package_dir: Path = PACKAGE_DIR) -> dict[str, Path]:
    """``{dotted name: file}`` for every module of the package (``__init__.py`` names its package)."""
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


class _ImportCollector(ast.NodeVisitor):
    def __init__(self, module: str, is_package: bool, known: set[str]):
        self.module, self.is_package, self.known = module, is_package, known
        self.found: list[tuple[int, str]] = []

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            for child in node.orelse:  # only the else branch runs
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name == "jedi_core" or alias.name.startswith("jedi_core."):
                self.found.append((node.lineno, alias.name))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:  # relative: resolve against this module's package
            package = self.module.split(".")
            if not self.is_package:
                package = package[:-1]
            package = package[: len(package) - (node.level - 1)]
            base = ".".join(package + ([base] if base else []))
        if not (base == "jedi_core" or base.startswith("jedi_core.")):
            return
        for alias in node.names:
            candidate = f"{base}.{alias.name}"
            self.found.append((node.lineno, candidate if candidate in self.known else base))


def imports_of(source: str, module: str, known: set[str], is_package: bool = False) -> list[tuple[int, str]]:
    """``(line, imported jedi_core module)`` for every import the source runs (not the TYPE_CHECKING ones)."""
    collector = _ImportCollector(module, is_package, known)
    collector.visit(ast.parse(source))
    return collector.found


def upward_imports(sources: dict[str, tuple[str, bool]], layers=LAYERS) -> list[str]:
    """Every import of a higher layer's module (or of a module no layer names) in ``{module: (source,
    is_package)}``, as readable lines."""
    known = set(sources)
    problems = []
    for module, (source, is_package) in sorted(sources.items()):
        own = layer_of(module, layers)
        for line, imported in imports_of(source, module, known, is_package):
            theirs = layer_of(imported, layers)
            if own is None or theirs is None:
                problems.append(f"{module}:{line} imports {imported}, and no layer names "
                                f"{module if own is None else imported}")
            elif theirs > own:
                problems.append(f"{module} (layer {own}) imports {imported} (layer {theirs}) at line {line}")
    return problems


def _sources() -> dict[str, tuple[str, bool]]:
    return {name: (path.read_text(), path.name == "__init__.py") for name, path in package_modules().items()}


def _imports_by_module() -> dict[str, list[tuple[int, str]]]:
    sources = _sources()
    return {name: imports_of(source, name, set(sources), is_package)
            for name, (source, is_package) in sources.items()}


# ----------------------------------------------------------------------------------------------
# The package's rules


def test_every_module_of_the_package_has_a_layer():
    unknown = [name for name in package_modules() if layer_of(name) is None]
    assert not unknown, f"give these modules a layer in LAYERS (tests/test_layers.py): {unknown}"


def test_no_module_imports_a_higher_layer():
    problems = upward_imports(_sources())
    assert not problems, "imports against the layering:\n" + "\n".join(problems)


def test_the_networks_take_numbers_not_config_sections():
    offending = [f"{module}:{line} imports {imported}"
                 for module, found in _imports_by_module().items() if module.startswith("jedi_core.nn")
                 for line, imported in found if imported in ("jedi_core.config", "jedi_core.configlib")]
    assert not offending, ("jedi_core.nn must not import the config (pass numbers, not config sections): "
                           + "; ".join(offending))


def test_only_the_command_line_and_analysis_import_training():
    allowed = ("jedi_core.training", "jedi_core.analysis", "jedi_core.sweep", "jedi_core.__main__")
    offending = [f"{module}:{line} imports {imported}"
                 for module, found in _imports_by_module().items()
                 if not any(module == a or module.startswith(a + ".") for a in allowed)
                 for line, imported in found
                 if imported == "jedi_core.training" or imported.startswith("jedi_core.training.")]
    assert not offending, ("only training/, analysis/ and __main__ may import jedi_core.training: "
                           + "; ".join(offending))


def test_training_does_not_import_analysis():
    offending = [f"{module}:{line} imports {imported}"
                 for module, found in _imports_by_module().items()
                 if module == "jedi_core.training" or module.startswith("jedi_core.training.")
                 for line, imported in found
                 if imported == "jedi_core.analysis" or imported.startswith("jedi_core.analysis.")]
    assert not offending, "jedi_core.training must not import jedi_core.analysis: " + "; ".join(offending)


def test_importing_training_loads_no_matplotlib():
    code = ("import sys, jedi_core.training.loop, jedi_core.training.checkpoint, jedi_core.training.collect; "
            "assert 'matplotlib' not in sys.modules, 'importing jedi_core.training loaded matplotlib'")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr


# ----------------------------------------------------------------------------------------------
# The checker itself


def test_the_checker_reports_an_upward_import_and_nothing_else():
    layers = [("jedi_core.low",), ("jedi_core.high", "jedi_core.pkg.*")]
    sources = {
        "jedi_core.low": ("import os\nfrom jedi_core import high\n", False),  # upward: fails
        "jedi_core.high": ("import jedi_core.low\n", False),
        "jedi_core.pkg": ("from . import low_ok\n", True),  # jedi_core.pkg.low_ok: its own layer
        "jedi_core.pkg.low_ok": (
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n"
            "    from jedi_core.high import Thing\n"  # annotations only: not an import that runs
            "def f():\n"
            "    from ..low import g\n"  # inside a function, relative: jedi_core.low
            "    return g\n", False),
    }
    assert upward_imports(sources, layers) == [
        "jedi_core.low (layer 0) imports jedi_core.high (layer 1) at line 2"]
    found = imports_of(sources["jedi_core.pkg.low_ok"][0], "jedi_core.pkg.low_ok", set(sources))
    assert found == [(5, "jedi_core.low")]
    clean = {**sources, "jedi_core.low": ("import os\n", False)}
    assert upward_imports(clean, layers) == []
    in_function = "def f():\n    import jedi_core.high\n"
    assert upward_imports({**clean, "jedi_core.low": (in_function, False)}, layers) == [
        "jedi_core.low (layer 0) imports jedi_core.high (layer 1) at line 2"]
    unnamed = upward_imports({**clean, "jedi_core.new": ("import jedi_core.low\n", False)}, layers)
    assert unnamed == ["jedi_core.new:1 imports jedi_core.low, and no layer names jedi_core.new"]


def test_layer_lookup_prefers_exact_names_and_matches_packages():
    assert layer_of("jedi_core.nn.ops") == 0 and layer_of("jedi_core.nn.blocks") == 1
    assert layer_of("jedi_core.nn") == 1 and layer_of("jedi_core.replay") == 2
    assert layer_of("jedi_core.training.loop") == 5 and layer_of("jedi_core.analysis") == 6
    assert layer_of("jedi_core.envs.games") == 0 and layer_of("jedi_core.envs") == 1
    assert layer_of("jedi_core.envs.new_game") is None and layer_of("jedi_core.something") is None
    assert layer_of("jedi_core") == 1 and layer_of("jedi_core.__main__") == 7
