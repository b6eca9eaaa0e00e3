"""jedi_core.configlib: the generic config engine (overrides, validation, dict round trip, descriptions).

The engine knows nothing of JEDI: the first tests run it on a small schema of their own, the others on the
project's Config.
"""

import dataclasses
from dataclasses import dataclass, field

import pytest

from jedi_core.config import Config, PerformanceConfig
from jedi_core.configlib import (
    ConfigError,
    apply_overrides,
    describe,
    did_you_mean,
    from_dict,
    option,
    to_dict,
    validate,
)
from jedi_core.presets import make_config


@dataclass(frozen=True)
class _Shape:
    kind: str = option("square", choices=("square", "circle"), help="what to draw")
    size: float = option(1.0, low=0.0, high=10.0)
    corners: tuple[int, ...] = option((0, 0, 0, 0))

    def validate(self) -> None:
        if self.kind == "circle" and any(self.corners):
            raise ConfigError("shape.corners: a circle has none")


@dataclass(frozen=True)
class _Drawing:
    name: str = option("sketch")
    copies: int = option(1, low=1)
    shape: _Shape = field(default_factory=_Shape)


def test_the_engine_runs_on_any_dataclass_tree():
    drawing = apply_overrides(_Drawing(), ["shape.size=2.5", "copies=3", "shape.corners=1,2,3,4"])
    assert drawing == _Drawing(copies=3, shape=_Shape(size=2.5, corners=(1, 2, 3, 4)))
    validate(drawing)
    assert from_dict(to_dict(drawing), _Drawing) == drawing
    assert describe(drawing)[:2] == ["name = 'sketch'", "copies = 3"]
    assert "shape.kind = 'square'  # what to draw" in describe(drawing)
    with pytest.raises(ConfigError, match=r"unknown config key 'shape\.sise'.*did you mean 'size'"):
        apply_overrides(drawing, ["shape.sise=1"])
    message = r"shape\.kind: 'circel' is not allowed; choose one of: square, circle"
    with pytest.raises(ConfigError, match=message):
        validate(apply_overrides(drawing, ["shape.kind=circel"]))
    with pytest.raises(ConfigError, match=r"shape\.size: 11\.0 is out of range"):
        validate(apply_overrides(drawing, ["shape.size=11"]))
    with pytest.raises(ConfigError, match="a circle has none"):  # the section's own rule runs last
        validate(apply_overrides(drawing, ["shape.kind=circle"]))
    with pytest.raises(ConfigError, match="copies: cannot read 'two' as an integer"):
        apply_overrides(drawing, ["copies=two"])


def test_sequence_defaults_must_be_tuples():
    with pytest.raises(TypeError, match="use tuples"):
        option([1, 2])


def test_did_you_mean_suggests_only_a_close_word():
    assert did_you_mean("sed", ["seed", "device"]) == " (did you mean 'seed'?)"
    assert did_you_mean("zzz", ["seed", "device"]) == ""


def test_type_checks_catch_values_set_in_code():
    with pytest.raises(ConfigError, match="seed: '3' is not an integer"):
        validate(dataclasses.replace(Config(), seed="3"))


def test_dict_round_trip_and_strictness():
    cfg = make_config("colab", ["env.game=Pong"])
    assert from_dict(to_dict(cfg), Config) == cfg
    data = to_dict(cfg)
    data["env"]["colour"] = "red"
    with pytest.raises(ConfigError, match="colour"):
        from_dict(data, Config)


def test_from_dict_validates_and_fills_missing_sections_with_defaults():
    data = to_dict(make_config("smoke"))
    data["env"]["kind"] = "atri"
    with pytest.raises(ConfigError, match=r"env\.kind: 'atri' is not allowed"):
        from_dict(data, Config)
    older = to_dict(make_config("smoke"))
    del older["performance"]  # a run saved before the section existed
    assert from_dict(older, Config).performance == PerformanceConfig()


def test_describe_lists_every_leaf_with_help():
    lines = describe(make_config("smoke"))
    assert any(line.startswith("env.game = 'Breakout'") for line in lines)
    assert any(line.startswith("replay.sample_weights = (0.1, 0.1, 0.1, 0.7)") for line in lines)


def test_apply_overrides_does_not_mutate():
    base = make_config("smoke")
    changed = apply_overrides(base, ["seed=5"])
    assert base.seed == 0 and changed.seed == 5
