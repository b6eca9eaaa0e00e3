"""jedi_core.sweep: the run list, the local pool (stop and resume included), submitit's local executor, the
sbatch script and the SLURM submission (built without a cluster: sbatch is faked)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jedi_core.__main__ import main
from jedi_core.presets import make_config
from jedi_core.sweep import parse_games, parse_methods, parse_seeds, plan_runs, run_state, slurm_backend
from jedi_core.sweep.runs import Run
from jedi_core.sweep.sbatch import SlurmOptions, sbatch_script
from jedi_core.training.run_dir import (
    CHECKPOINT_FILE,
    FINAL_SCORES_FILE,
    LOCK_FILE,
    default_run_dir,
    read_metrics,
)

#: The cheapest real run: 50 random steps, then epochs of 50 steps with 1-2 updates each, no periodic
#: evaluation, and a final one capped at 100 agent steps (a second or two per run on a CPU).
TINY = ("training.initial_random_steps=50", "training.first_epoch_world_model_updates=2",
        "training.first_epoch_actor_critic_updates=1", "training.world_model_updates=1",
        "training.actor_critic_updates=1", "training.final_training_epochs=0", "training.eval_every_epochs=0",
        "env.max_episode_frames=400")


@pytest.fixture(autouse=True)
def one_thread_per_run(monkeypatch):
    """Runs side by side on a small CPU: one thread each (OpenMP threads of several runs on the same cores
    spin while they wait for each other)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def _epochs(run_dir):
    return [record["epoch"] for record in read_metrics(run_dir)]


def _wait_for_an_epoch(run_dir, process=None, timeout_s=300):
    deadline = time.monotonic() + timeout_s
    while not read_metrics(run_dir):
        assert time.monotonic() < deadline, f"{run_dir} logged no epoch in {timeout_s} s"
        assert process is None or process.poll() is None, "the sweep ended before its first epoch"
        time.sleep(0.05)


# ----------------------------------------------------------------------------------------------
# The run list


def test_options_parse_into_a_deterministic_product_of_train_run_folders(tmp_path):
    assert parse_games(["pong, Breakout,pong"]) == ["Pong", "Breakout"]
    assert len(parse_games(["all"])) == 26 and parse_games(["toy"]) == ["toy"]
    assert parse_seeds("0-2,7,2") == [0, 1, 2, 7] and parse_methods("diamond,jedi") == ["diamond", "jedi"]

    runs = plan_runs(["Pong", "Breakout"], ["jedi", "diamond"], [0, 1], "smoke", TINY, tmp_path)
    assert runs == plan_runs(["Pong", "Breakout"], ["jedi", "diamond"], [0, 1], "smoke", TINY, tmp_path)
    # Seed by seed: a sweep stopped halfway has whole seeds; a game and seed's two methods are neighbours.
    assert [(r.seed, r.game, r.method) for r in runs] == [
        (0, "Pong", "jedi"), (0, "Pong", "diamond"), (0, "Breakout", "jedi"), (0, "Breakout", "diamond"),
        (1, "Pong", "jedi"), (1, "Pong", "diamond"), (1, "Breakout", "jedi"), (1, "Breakout", "diamond")]
    for run in runs:  # train's own folder names, below --runs-dir, and the pixel preset paired with smoke
        assert run.preset == {"jedi": "smoke", "diamond": "smoke_diamond"}[run.method]
        cfg = make_config(run.preset, [f"env.game={run.game}", f"seed={run.seed}"])
        assert run.run_dir == tmp_path / default_run_dir(cfg).name
        assert run.command[run.command.index("--run-dir") + 1] == str(run.run_dir)
    assert runs[0].run_dir.name == "jedi_smoke_Pong_seed0"
    assert runs[1].run_dir.name == "diamond_smoke_diamond_Pong_seed0"

    (toy,) = plan_runs(["toy"], ["jedi"], [3], "smoke")  # the toy game is env.kind=toy, in train's runs/
    assert toy.run_dir == Path("runs/jedi_smoke_toy_seed3").absolute() and "--env" in toy.command
    assert toy.command[toy.command.index("--env") + 1] == "toy" and "--game" not in toy.command


def test_dry_run_lists_each_run_with_its_state(tmp_path, capsys):
    runs = plan_runs(["Pong"], ["jedi"], [0, 1, 2], "smoke", runs_dir=tmp_path)
    for run in runs[:2]:
        run.run_dir.mkdir()
    (runs[0].run_dir / FINAL_SCORES_FILE).write_text("{}")
    (runs[1].run_dir / CHECKPOINT_FILE).write_text("")
    assert [run_state(run) for run in runs] == ["done", "partial", "new"]
    assert main(["sweep", "--games", "pong", "--seeds", "0-2", "--preset", "smoke",
                 "--runs-dir", str(tmp_path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "3 runs: 1 done, 1 partial, 1 new" in out
    for state, seed in (("done", 0), ("partial", 1), ("new", 2)):
        assert any(line.startswith(state) and f"seed{seed}" in line for line in out.splitlines())


def test_a_local_sweep_resumes_its_partial_runs_before_it_starts_new_ones(tmp_path, monkeypatch, capsys):
    runs = plan_runs(["Pong"], ["jedi"], [0, 1, 2, 3], "smoke", runs_dir=tmp_path)
    for run in runs:
        run.run_dir.mkdir()
    (runs[0].run_dir / FINAL_SCORES_FILE).write_text("{}")
    (runs[2].run_dir / CHECKPOINT_FILE).write_text("")
    started = []

    class Pool:  # what the local pool is handed, in its order; nothing trains
        def __init__(self, todo, workers, skipped):
            started.extend(todo)

        def run(self):
            return 0

    monkeypatch.setattr("jedi_core.sweep.backends.LocalPool", Pool)
    assert main(["sweep", "--games", "pong", "--seeds", "0-3", "--preset", "smoke", "--jobs", "2",
                 "--runs-dir", str(tmp_path)]) == 0
    assert [run.seed for run in started] == [2, 1, 3]  # the partial run, then the new ones in plan order
    assert "3 of 4 runs to train" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--games", "Pnog"], "did you mean 'Pong'?"),
    (["--games", "Pong", "--seeds", "4-0"], "the range '4-0' goes down"),
    (["--games", "Pong", "--seeds", "0-x"], "bad --seeds '0-x'"),
    (["--games", "Pong", "--methods", "jedii"], "unknown method 'jedii' (did you mean 'jedi'?)"),
    (["--games", "Pong", "--backend", "slurm", "--gpus", "0,1"], "--gpus is for --backend local"),
    (["--games", "Pong", "--partition", "gpu"], "--partition is for --backend slurm or print"),
    (["--games", "Pong", "--gpus", "0", "--jobs", "2"], "not both"),
    (["--games", "Pong", "--backend", "print", "--max-parallel", "0"], "--max-parallel must be at least 1"),
    (["--games", "Pong", "--preset", "diamond"], "use --preset atari100k --methods diamond"),
    (["--games", "Pong", "--preset", "toy", "--methods", "jedi,diamond"], "toy has no pixel-diffusion"),
    (["--games", "Pong", "seed=3"], "the sweep sets seed from --seeds"),
    (["--games", "Pong", "Breakout"], "with commas, e.g. --games Pong,Breakout"),
    (["--games", "Pong", "env.gmae=x"], "did you mean 'game'?"),
])
def test_bad_input_is_refused_with_a_clear_message(args, message, capsys):
    assert main(["sweep", *args, "--dry-run"]) == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error


# ----------------------------------------------------------------------------------------------
# The local backend


def test_a_local_sweep_trains_every_run_report_reads_it_and_a_rerun_skips_them_all(tmp_path, capsys):
    overrides = ["env_steps=150", *TINY]
    command = ["sweep", "--games", "Pong", "--seeds", "0-1", "--methods", "jedi,diamond", "--preset", "smoke",
               "--jobs", "2", "--runs-dir", str(tmp_path / "runs"), *overrides]
    assert main(command) == 0
    assert "4 done, 0 running, 0 failed, 0 queued, 0 skipped" in capsys.readouterr().out
    runs = plan_runs(["Pong"], ["jedi", "diamond"], [0, 1], "smoke", overrides, tmp_path / "runs")
    for run in runs:
        assert json.loads((run.run_dir / FINAL_SCORES_FILE).read_text())["env_steps"] == 150
        assert run.log_path.read_text().count("\n=== ") == 1  # one train command, its output below it

    report = ["report", str(tmp_path / "runs"), "--out", str(tmp_path / "report"), "--bootstrap", "200"]
    assert main(report) == 0
    table = (tmp_path / "report/report.md").read_text()
    assert "| Pong |" in table and "JEDI score" in table and "DIAMOND (ours) score" in table

    started = time.monotonic()
    assert main(command) == 0
    assert time.monotonic() - started < 10  # nothing trains: no process starts
    assert "all 4 runs have finished" in capsys.readouterr().out
    assert all(run.log_path.read_text().count("\n=== ") == 1 for run in runs)


def test_a_sweep_stopped_by_sigterm_resumes_without_losing_or_repeating_a_step(tmp_path, capsys):
    overrides = ["env_steps=500", *TINY]
    command = ["sweep", "--games", "toy", "--seeds", "0-1", "--preset", "smoke", "--jobs", "1",
               "--runs-dir", str(tmp_path), *overrides]
    first, second = plan_runs(["toy"], ["jedi"], [0, 1], "smoke", overrides, tmp_path)
    sweep = subprocess.Popen([sys.executable, "-m", "jedi_core", *command], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    _wait_for_an_epoch(first.run_dir, sweep)
    sweep.send_signal(signal.SIGTERM)
    out, _ = sweep.communicate(timeout=300)
    assert sweep.returncode == 128 + signal.SIGTERM, out  # stopped, not failed
    assert "1 run(s) stopped and 1 not started" in out  # the queued run did not start
    assert "stopped by SIGTERM: saved" in first.log_path.read_text()
    assert run_state(first) == "partial" and run_state(second) == "new"

    assert main(command) == 0  # the same command resumes the first run and trains the second
    assert "2 done" in capsys.readouterr().out
    for run in (first, second):
        assert json.loads((run.run_dir / FINAL_SCORES_FILE).read_text())["env_steps"] == 500  # no step twice
        epochs = _epochs(run.run_dir)
        assert epochs == list(range(1, len(epochs) + 1))  # every epoch logged once, in order
    from jedi_core.replay import ReplayBuffer

    assert ReplayBuffer.load(first.run_dir / "replay").num_steps == 500  # no step lost or repeated


# ----------------------------------------------------------------------------------------------
# submitit (its local executor) and SLURM (sbatch faked)


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="finds the task's process through /proc")
def test_submitit_runs_the_sweep_and_requeues_a_task_stopped_by_slurms_warning_signal(tmp_path):
    slurm = slurm_backend()
    overrides = ["env_steps=400", *TINY]
    runs = plan_runs(["toy"], ["jedi"], [0, 1], "smoke", overrides, tmp_path)
    executor = slurm.make_executor(tmp_path / "submitit", SlurmOptions(time_min=30, gpus_per_run=0),
                                   cluster="local")
    jobs = slurm.submit(executor, runs)
    stopped = runs[0]
    _wait_for_an_epoch(stopped.run_dir)
    # SLURM signals the task (submitit's process, train's parent) ahead of its time limit or at preemption.
    train_pid = int((stopped.run_dir / LOCK_FILE).read_text())
    task_pid = int(Path(f"/proc/{train_pid}/stat").read_text().rpartition(")")[2].split()[1])
    os.kill(task_pid, signal.SIGUSR2)
    assert [job.result() for job in jobs] == [str(run.run_dir) for run in runs]
    log = stopped.log_path.read_text()
    assert "stopped by SIGUSR2: saved" in log and log.count("\n=== ") == 2  # stopped, requeued, resumed
    assert "Requeued job" in jobs[0].stdout()
    for run in runs:
        assert json.loads((run.run_dir / FINAL_SCORES_FILE).read_text())["env_steps"] == 400
        epochs = _epochs(run.run_dir)
        assert epochs == list(range(1, len(epochs) + 1))


class FakeSbatch:
    """Stands in for ``sbatch`` under submitit: keeps each submission script, answers with a job id."""

    scripts: list[str] = []

    def __init__(self, command, verbose=True, **kwargs):
        self.command = command

    def __call__(self):
        assert self.command[0] == "sbatch", self.command
        FakeSbatch.scripts.append(Path(self.command[1]).read_text())
        return "Submitted batch job 4242\n"


def test_the_slurm_backend_submits_one_job_array_with_the_resources_asked_for(tmp_path, monkeypatch, capsys):
    import submitit  # the test extra installs it: a missing one must fail here, not skip
    from submitit.core import utils

    which = shutil.which  # submitit looks for srun to tell a SLURM machine
    monkeypatch.setattr(shutil, "which", lambda name, *a: "/usr/bin/srun" if name == "srun" else which(name))
    monkeypatch.setattr(utils, "CommandFunction", FakeSbatch)
    FakeSbatch.scripts = []
    assert main(["sweep", "--games", "Pong,Breakout", "--seeds", "0-1", "--methods", "jedi,diamond",
                 "--backend", "slurm", "--partition", "gpu", "--time", "90", "--max-parallel", "3",
                 "--gpus-per-run", "2", "--cpus-per-run", "8", "--mem", "32",
                 "--runs-dir", str(tmp_path)]) == 0
    (script,) = FakeSbatch.scripts  # one sbatch call: one array for the 8 runs
    for flag in ("--array=0-7%3", "--time=90", "--partition=gpu", "--gpus-per-node=2", "--cpus-per-task=8",
                 "--mem=32GB", "--signal=USR2@120", "--requeue", "--job-name=jedi-sweep"):
        assert f"#SBATCH {flag}\n" in script
    out = capsys.readouterr().out
    assert "submitted 8 task(s) as job 4242" in out and "4242_7" in out and "sweep.log" in out
    runs = plan_runs(["Pong", "Breakout"], ["jedi", "diamond"], [0, 1], runs_dir=tmp_path)
    for index, run in enumerate(runs):  # task N runs run N, and may be requeued many times
        pickled = tmp_path / "submitit" / f"4242_{index}" / f"4242_{index}_submitted.pkl"
        delayed = submitit.helpers.DelayedSubmission.load(pickled)
        assert delayed.args == (run,) and delayed._timeout_countdown == 100
        assert type(delayed.function).__name__ == "TrainTask"


def test_without_submitit_the_slurm_backend_names_the_extra(tmp_path, monkeypatch, capsys):
    import jedi_core.sweep

    monkeypatch.setitem(sys.modules, "submitit", None)
    monkeypatch.delitem(sys.modules, "jedi_core.sweep.slurm", raising=False)
    monkeypatch.delattr(jedi_core.sweep, "slurm", raising=False)
    assert main(["sweep", "--games", "Pong", "--backend", "slurm", "--runs-dir", str(tmp_path)]) == 2
    assert 'pip install -c constraints.txt -e ".[slurm]"' in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# The print backend


def test_the_print_backend_prints_the_commands_and_an_sbatch_array_script(tmp_path, capsys):
    runs = plan_runs(["Pong", "Breakout"], ["jedi", "diamond"], [0, 1, 2], "smoke", ["env_steps=150"],
                     tmp_path)
    runs[0].run_dir.mkdir(parents=True)
    (runs[0].run_dir / FINAL_SCORES_FILE).write_text("{}")  # finished: left out of the array
    assert main(["sweep", "--games", "Pong,Breakout", "--seeds", "0-2", "--methods", "jedi,diamond",
                 "--preset", "smoke", "--backend", "print", "--runs-dir", str(tmp_path), "--partition", "gpu",
                 "--time", "90", "--max-parallel", "4", "--gpus-per-run", "2", "--cpus-per-run", "8",
                 "--mem", "32", "env_steps=150"]) == 0
    printed = capsys.readouterr()
    assert printed.out.splitlines() == [run.shell_command for run in runs[1:]]
    script = (tmp_path / "sweep.sbatch").read_text()
    for flag in ("--array=0-10%4", "--time=90", "--partition=gpu", "--gpus-per-node=2", "--cpus-per-task=8",
                 "--mem=32G", "--signal=B:USR2@120", "--requeue"):
        assert f"#SBATCH {flag}\n" in script
    for index, run in enumerate(runs[1:]):
        assert f"  {index}) LOG={run.log_path}; COMMAND=({run.shell_command}) ;;" in script
    assert (tmp_path / "slurm_logs").is_dir() and "sbatch" in printed.err
    assert subprocess.run(["bash", "-n", str(tmp_path / "sweep.sbatch")]).returncode == 0


def test_an_sbatch_task_passes_the_time_limit_signal_on_then_requeues_itself(tmp_path):
    """The script's own logic, run by bash with a stand-in for train (saves on SIGUSR2, exits 140) and for
    scontrol: the task waits for the save, then requeues itself."""
    stand_in = ("import signal, sys, time\n"
                "signal.signal(signal.SIGUSR2, lambda *_: (time.sleep(0.5), print('saved'), sys.exit(140)))\n"
                "print('training', flush=True)\n"
                "time.sleep(60)\n")
    runs = [Run("jedi", "toy", seed, "smoke", tmp_path / f"run{seed}", (sys.executable, "-c", stand_in))
            for seed in range(2)]
    script = tmp_path / "sweep.sbatch"
    script.write_text(sbatch_script(runs, SlurmOptions(), tmp_path / "logs", tmp_path))
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin/scontrol").write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/scontrol.txt\n')
    (tmp_path / "bin/scontrol").chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}/bin:{os.environ['PATH']}", "SLURM_ARRAY_JOB_ID": "77",
           "SLURM_ARRAY_TASK_ID": "1"}
    task = subprocess.Popen(["bash", str(script)], env=env)
    deadline = time.monotonic() + 60
    while "training" not in (runs[1].log_path.read_text() if runs[1].log_path.is_file() else ""):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    task.send_signal(signal.SIGUSR2)  # what --signal=B:USR2@120 sends the batch shell
    assert task.wait(timeout=60) == 140
    assert runs[1].log_path.read_text() == "training\nsaved\n"  # train saved before the task ended
    assert (tmp_path / "scontrol.txt").read_text().split() == ["requeue", "77_1"]
    assert not runs[0].run_dir.exists()  # task 1 ran run 1 only
