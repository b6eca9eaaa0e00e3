"""jedi_core.__main__: the command line (train, evaluate, export, report, games, config, bench)."""

import json
import subprocess
import sys

import cv2
import pytest
import torch

from jedi_core.__main__ import main


def _run(*args):
    return subprocess.run([sys.executable, "-m", "jedi_core", *args], capture_output=True, text=True,
                          timeout=120)


def test_help_lists_the_commands():
    result = _run("--help")
    assert result.returncode == 0
    for command in ("report", "games", "config"):
        assert command in result.stdout


def test_games_lists_26_games_with_action_counts(capsys):
    assert main(["games"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 27  # header + 26 games
    breakout = next(line for line in lines if line.startswith("Breakout"))
    assert breakout.split()[1] == "4" and "agent-optimal" in breakout


def test_config_prints_overrides_and_rejects_bad_keys(capsys):
    assert main(["config", "--preset", "smoke", "env.game=Pong", "seed=3"]) == 0
    out = capsys.readouterr().out
    assert "env.game = 'Pong'" in out and "seed = 3" in out and "preset = 'smoke'" in out
    assert main(["config", "env.gmae=Pong"]) == 2
    assert "did you mean 'game'" in capsys.readouterr().err


def test_report_end_to_end_in_a_subprocess(tmp_path):
    runs = tmp_path / "runs"
    for seed in range(2):
        for game, returns in (("Pong", [10.0, 12.0]), ("Breakout", [30.0, 40.0])):
            run = runs / f"{game}_{seed}"
            run.mkdir(parents=True)
            scores = {"method": "JEDI", "game": game, "seed": seed, "episode_returns": returns,
                      "env_steps": 100_000}
            (run / "final_scores.json").write_text(json.dumps(scores))
    result = _run("report", str(runs), "--out", str(tmp_path / "out"), "--bootstrap", "200")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out/report.md").is_file() and (tmp_path / "out/report.png").is_file()


def test_report_without_runs_fails_cleanly(tmp_path):
    result = _run("report", str(tmp_path))
    assert result.returncode == 2 and "error:" in result.stderr and "Traceback" not in result.stderr


def test_config_prints_parameter_counts(capsys):
    assert main(["config", "--preset", "diamond", "--params"]) == 0
    out = capsys.readouterr().out
    denoiser = next(line for line in out.splitlines() if line.strip().startswith("denoiser"))
    assert 4_350_000 < int(denoiser.split()[-1].replace(",", "")) < 4_450_000  # DIAMOND's 4.4M


def test_evaluate_command_scores_a_run_and_writes_its_videos(finished_toy_run, capsys):
    run_dir = finished_toy_run.run_dir
    assert main(["evaluate", str(run_dir), "--episodes", "3", "--video", "--probe-updates", "3"]) == 0
    printed = capsys.readouterr().out
    assert "over 3 episodes" in printed and "agent_vs_imagination." in printed
    for name, width in (("agent", 64), ("agent_vs_imagination", 2 * 64 + 4)):
        (video_file,) = (run_dir / "videos").glob(f"{name}.*")  # .mp4 (H.264) or .webm (VP9)
        capture = cv2.VideoCapture(str(video_file))
        assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 8  # one Catch episode: 7 steps, 8 frames
        assert int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)) == 4 * width


def test_evaluate_video_fits_the_decoder_probe_once_and_reuses_it(finished_toy_run, capsys, monkeypatch):
    from jedi_core.analysis import video
    from jedi_core.training.run_dir import PROBE_FILE

    run_dir = finished_toy_run.run_dir
    command = ["evaluate", str(run_dir), "--episodes", "1", "--video", "--probe-updates", "3"]
    assert main(command) == 0 and (run_dir / PROBE_FILE).is_file()

    def no_fit(*args, **kwargs):
        raise AssertionError("the saved probe fits this encoder: no new fit")

    monkeypatch.setattr(video, "fit_decoder_probe", no_fit)
    assert main(command) == 0
    saved = torch.load(run_dir / PROBE_FILE, weights_only=True)
    assert saved["updates"] == 3 and list((run_dir / "videos").glob("agent_vs_imagination.*"))
    monkeypatch.undo()
    fits, fit = [], video.fit_decoder_probe

    def counted_fit(*args, **kwargs):
        fits.append(1)
        return fit(*args, **kwargs)

    monkeypatch.setattr(video, "fit_decoder_probe", counted_fit)
    assert main([*command[:-1], "4"]) == 0 and fits == [1]  # another number of updates: fitted again


def test_evaluate_without_video_needs_only_the_checkpoint(finished_toy_run, capsys):
    from jedi_core.replay import REPLAY_INDEX
    from jedi_core.training.run_dir import REPLAY_DIR

    run_dir = finished_toy_run.run_dir
    (run_dir / REPLAY_DIR / REPLAY_INDEX).write_text("{damaged")
    assert main(["evaluate", str(run_dir), "--episodes", "2"]) == 0
    assert "over 2 episodes" in capsys.readouterr().out
    assert main(["evaluate", str(run_dir), "--episodes", "1", "--video"]) == 2  # the video needs the replay
    assert REPLAY_INDEX in capsys.readouterr().err


def test_evaluate_command_explains_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "is it a run folder made by `train`" in capsys.readouterr().err


@pytest.mark.parametrize("option", ["--episodes", "--probe-updates"])
def test_evaluate_refuses_a_count_below_one_before_loading_anything(tmp_path, capsys, option):
    assert main(["evaluate", str(tmp_path), option, "0"]) == 2  # tmp_path is no run: checked first
    assert f"{option} must be at least 1, got 0" in capsys.readouterr().err


def test_help_texts_read_as_written_and_an_ignored_game_is_said(capsys, monkeypatch):
    with pytest.raises(SystemExit):
        main(["report", "--help"])
    assert "95% CIs" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "default: atari100k" in capsys.readouterr().out

    class NoTraining:  # only what train says before it starts matters here
        def __init__(self, cfg, run_dir, quiet):
            self.cfg = cfg

        def run(self):
            return {"episode_returns": [1.0], "method": "JEDI", "game": self.cfg.env.game_name}

    import jedi_core.training.loop as loop

    monkeypatch.setattr(loop, "Trainer", NoTraining)
    assert main(["train", "--preset", "toy", "--game", "Pong", "--quiet"]) == 0
    assert "--game Pong is ignored: the toy game has no Atari game" in capsys.readouterr().err
