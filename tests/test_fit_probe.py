"""tools/fit_probe.py: a run's agent file with a probe fitted offline on its replay, scored on held-out
episodes, and bad options refused with what is allowed."""

import pytest
import torch

from jedi_core.training.checkpoint import load_agent, load_run


@pytest.fixture
def fit_probe(load_script):
    return load_script("tools/fit_probe.py")


def test_the_fitted_probe_learns_and_travels_in_the_agent_file(fit_probe, finished_toy_run, tmp_path, capsys):
    _, run_dir, _ = finished_toy_run
    out = tmp_path / "agent.pt"
    fit_probe.main([str(run_dir), str(out), "--channels", "8,8,4", "--updates", "60", "--batch-size", "8",
                    "--held-out-episodes", "1"])
    printed = capsys.readouterr().out
    assert "fitted probe 8,8,4" in printed and f"wrote {out}" in printed
    cfg, agent, info = load_agent(out)
    assert cfg.world_model.probe_channels == (8, 8, 4) and agent.world_model.probe is not None
    record = info["probe_fit"]
    assert "--updates 60" in record["command"] and record["training_frames"] > record["held_out_frames"] > 0
    errors = record["squared_error"]
    # 60 updates draw the held-out frames better than a blank grey picture (all zeros in [-1, 1]) does.
    _, trained, replay = load_run(run_dir)
    blank = float(fit_probe.frames_to_float(torch.from_numpy(replay.episodes[-1].obs)).pow(2).mean())
    assert errors["fitted probe 8,8,4"]["all"] < blank / 2
    for name, value in trained.state_dict().items():  # the agent itself is the run's
        assert torch.equal(agent.state_dict()[name], value), name


@pytest.mark.parametrize("options, message", [(["--channels", "8,8"], "give 3 numbers"),
                                              (["--held-out-episodes", "0"], "hold out at least one"),
                                              (["--updates", "0"], "must be at least 1")])
def test_bad_options_are_refused_with_what_is_allowed(fit_probe, finished_toy_run, tmp_path, options,
                                                      message):
    _, run_dir, _ = finished_toy_run
    with pytest.raises(SystemExit, match=message):
        fit_probe.main([str(run_dir), str(tmp_path / "agent.pt"), "--updates", "1", *options])
