import dataclasses

import pytest

from jedi_core.config import (
    PRESETS,
    Config,
    ConfigError,
    apply_overrides,
    describe,
    from_dict,
    make_config,
    to_dict,
    validate,
)


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


def test_overrides_parse_values_by_field_type():
    cfg = make_config("smoke", ["env.game=pong", "seed=7", "env.stochastic_frame_skip=true",
                                "replay.sample_weights=0.25,0.25,0.25,0.25", "env.frame_skip_range=[3, 5]"])
    assert cfg.env.game == "pong" and cfg.seed == 7 and cfg.env.stochastic_frame_skip is True
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
    with pytest.raises(ConfigError, match="key=value"):
        make_config("smoke", ["seed"])
    with pytest.raises(ConfigError, match="is a section"):
        make_config("smoke", ["env=1"])
    with pytest.raises(ConfigError, match="unknown preset 'smokey'.*did you mean 'smoke'"):
        make_config("smokey")


def test_unknown_game_fails_at_config_time_with_suggestion():
    with pytest.raises(ValueError, match="did you mean 'Breakout'.*Alien, Amidar"):
        make_config("smoke", ["env.game=Breakuot"])
    # The toy game ignores the Atari game name.
    assert make_config("smoke", ["env.kind=toy", "env.game=anything"]).env.kind == "toy"


def test_type_checks_catch_values_set_in_code():
    with pytest.raises(ConfigError, match="seed: '3' is not an integer"):
        validate(dataclasses.replace(Config(), seed="3"))


def test_dict_round_trip_and_strictness():
    cfg = make_config("colab", ["env.game=Pong"])
    assert from_dict(to_dict(cfg)) == cfg
    data = to_dict(cfg)
    data["env"]["colour"] = "red"
    with pytest.raises(ConfigError, match="colour"):
        from_dict(data)


def test_describe_lists_every_leaf_with_help():
    lines = describe(make_config("smoke"))
    assert any(line.startswith("env.game = 'Breakout'") for line in lines)
    assert any(line.startswith("replay.sample_weights = (0.1, 0.1, 0.1, 0.7)") for line in lines)


def test_apply_overrides_does_not_mutate():
    base = make_config("smoke")
    changed = apply_overrides(base, ["seed=5"])
    assert base.seed == 0 and changed.seed == 5


def test_model_section_shapes_are_checked():
    with pytest.raises(ConfigError, match=r"world_model\.encoder\.downsample: \(1, 1\) needs one 0 or 1 per stage"):
        make_config("smoke", ["world_model.encoder.downsample=1,1"])
    with pytest.raises(ConfigError, match=r"actor_critic\.downsample"):
        make_config("smoke", ["actor_critic.downsample=0,2"])
    with pytest.raises(ConfigError, match=r"world_model\.denoiser: channels, depths and attention need one entry"):
        make_config("smoke", ["world_model.denoiser.depths=1,1"])
    with pytest.raises(ConfigError, match=r"world_model\.reward_end: channels, depths and attention"):
        make_config("smoke", ["world_model.reward_end.attention=0,0"])
