"""jedi_core.config: the presets, the sections' own rules, and the messages a misspelt override gets."""

import dataclasses

import pytest

from jedi_core.config import ConfigError, EnvConfig, PerformanceConfig
from jedi_core.configlib import ConfigError as EngineConfigError
from jedi_core.configlib import validate
from jedi_core.presets import PRESETS, make_config


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_validates_and_records_its_name(preset):
    cfg = make_config(preset)
    assert cfg.preset == preset
    validate(cfg)


def test_presets_change_numbers_not_structure():
    smoke, full, pixel = make_config("smoke"), make_config("atari100k"), make_config("diamond")
    assert full.env_steps == 100_000 and full.eval_episodes == 100
    assert full.env.max_episode_frames == 108_000 and full.env.repeat_action_probability == 0.0
    assert smoke.env_steps < full.env_steps
    assert pixel.method == "diamond" and full.method == "jedi"
    assert [f.name for f in dataclasses.fields(smoke)] == [f.name for f in dataclasses.fields(full)]


#: The choices a preset may make apart from its method's paper-scale preset (``atari100k``, or ``diamond``
#: for the pixel baseline): the game it plays (a real Atari game or the toy one), the decoder probe (pictures
#: drawn from detached latents, no gradient into the method) and the one documented ablation
#: (docs/fidelity.md).
CHOICES_A_PRESET_MAY_CHANGE = {"env.kind", "world_model.decoder_probe", "world_model.reward_end.next_input"}


def _choices(cfg, prefix=""):
    """Every choice-valued field of a config tree, ``(dotted name, value)``: one with choices, or a bool."""
    for field in dataclasses.fields(cfg):
        value = getattr(cfg, field.name)
        if dataclasses.is_dataclass(value):
            yield from _choices(value, f"{prefix}{field.name}.")
        elif field.metadata.get("choices") is not None or isinstance(value, bool):
            yield f"{prefix}{field.name}", value


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_change_numbers_never_code_paths(preset):
    cfg = make_config(preset)
    reference = dict(_choices(make_config("diamond" if cfg.method == "diamond" else "atari100k")))
    chosen = dict(_choices(cfg))
    assert chosen.keys() == reference.keys() and len(chosen) > 12
    differing = {name for name, value in chosen.items() if value != reference[name]}
    assert differing <= CHOICES_A_PRESET_MAY_CHANGE, differing - CHOICES_A_PRESET_MAY_CHANGE


def test_the_allowed_differences_are_used_and_the_ablation_is_the_cpu_presets():
    changed = {name for preset in PRESETS for name, value in _choices(make_config(preset))
               if value != dict(_choices(make_config("atari100k"))).get(name, value)}
    assert CHOICES_A_PRESET_MAY_CHANGE <= changed
    assert {make_config(p).world_model.reward_end.next_input for p in ("cpu", "cpu_diamond")} == {"sampled"}


def test_overrides_parse_values_by_field_type():
    cfg = make_config("smoke", ["env.game=pong", "seed=7", "env.stochastic_frame_skip=true",
                                "replay.sample_weights=0.25,0.25,0.25,0.25", "env.frame_skip_range=[3, 5]"])
    assert cfg.env.game == "Pong" and cfg.seed == 7 and cfg.env.stochastic_frame_skip is True
    assert cfg.replay.sample_weights == (0.25, 0.25, 0.25, 0.25)
    assert cfg.env.frame_skip_range == (3, 5)


def test_unknown_key_names_the_key_and_suggests_the_closest():
    with pytest.raises(ConfigError, match=r"unknown config key 'env\.gmae'.*did you mean 'game'.*valid keys"):
        make_config("smoke", ["env.gmae=Pong"])
    with pytest.raises(ConfigError, match="unknown config key 'sed'.*did you mean 'seed'"):
        make_config("smoke", ["sed=1"])


def test_bad_values_name_the_field_and_what_is_allowed():
    with pytest.raises(ConfigError, match=r"env\.kind: 'atri' is not allowed; choose one of: atari, toy"):
        make_config("smoke", ["env.kind=atri"])
    with pytest.raises(ConfigError, match=r"seed: cannot read 'abc' as an integer"):
        make_config("smoke", ["seed=abc"])
    with pytest.raises(ConfigError, match=r"env\.repeat_action_probability: 1\.5 is out of range"):
        make_config("smoke", ["env.repeat_action_probability=1.5"])
    with pytest.raises(ConfigError, match=r"env\.frame_skip_range"):
        make_config("smoke", ["env.frame_skip_range=6,2"])
    with pytest.raises(ConfigError, match="replay.sample_weights"):
        make_config("smoke", ["replay.sample_weights=-1,2"])
    with pytest.raises(ConfigError, match="device"):
        make_config("smoke", ["device=gpu"])
    with pytest.raises(ConfigError, match=r"initial_random_steps_max: 4000 must be at least .*\(5000\)"):
        make_config("atari100k", ["training.initial_random_steps_max=4000"])
    with pytest.raises(ConfigError, match="key=value"):
        make_config("smoke", ["seed"])
    with pytest.raises(ConfigError, match="is a section"):
        make_config("smoke", ["env=1"])
    with pytest.raises(ConfigError, match="unknown preset 'smokey'.*did you mean 'smoke'"):
        make_config("smokey")


def test_a_game_name_in_any_case_is_the_game_itself_and_scientific_integers_get_a_hint():
    assert make_config("smoke", ["env.game=breakout"]).env.game == "Breakout"
    assert make_config("smoke", ["env.game=breakout"]) == make_config("smoke", ["env.game=Breakout"])
    with pytest.raises(ConfigError, match=r"env_steps: cannot read '1e5' as an integer \(write 100000 or "
                                          r"100_000\)"):
        make_config("smoke", ["env_steps=1e5"])


def test_unknown_game_fails_at_config_time_with_suggestion():
    with pytest.raises(ValueError, match="did you mean 'Breakout'.*Alien, Amidar"):
        make_config("smoke", ["env.game=Breakuot"])
    # The toy game ignores the Atari game name.
    assert make_config("smoke", ["env.kind=toy", "env.game=anything"]).env.kind == "toy"


def test_model_section_shapes_are_checked():
    needs = r"world_model\.encoder\.downsample: \(1, 1\) needs one 0 or 1 per stage"
    with pytest.raises(ConfigError, match=needs):
        make_config("smoke", ["world_model.encoder.downsample=1,1"])
    with pytest.raises(ConfigError, match=r"actor_critic\.downsample"):
        make_config("smoke", ["actor_critic.downsample=0,2"])
    needs = r"world_model\.denoiser: channels, depths and attention need one entry"
    with pytest.raises(ConfigError, match=needs):
        make_config("smoke", ["world_model.denoiser.depths=1,1"])
    with pytest.raises(ConfigError, match=r"world_model\.reward_end: channels, depths and attention"):
        make_config("smoke", ["world_model.reward_end.attention=0,0"])


def test_an_unknown_precision_is_a_clear_error():
    message = "performance.precision: 'fp16' is not allowed; choose one of: fp32, bf16"
    with pytest.raises(ConfigError, match=message):
        make_config("smoke", ["performance.precision=fp16"])


def test_the_fast_path_is_off_unless_asked():
    assert make_config("atari100k").performance == PerformanceConfig(precision="fp32", compile="off")
    fast = make_config("smoke", ["performance.precision=bf16", "performance.compile=reduce-overhead"])
    assert (fast.performance.precision, fast.performance.compile) == ("bf16", "reduce-overhead")


def test_game_name_is_the_atari_game_or_toy():
    assert EnvConfig(game="Pong").game_name == "Pong"
    assert EnvConfig(kind="toy", game="Pong").game_name == "toy"
    assert make_config("toy").env.game_name == "toy"


def test_config_error_is_the_engine_s_error():
    assert ConfigError is EngineConfigError  # `from jedi_core.config import ConfigError` still works
