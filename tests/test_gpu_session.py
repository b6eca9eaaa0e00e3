"""benchmarks/gpu_session.sh, the one-command GPU measurement, run as its CPU dry run: every stage must still
import, parse its flags, measure at tiny sizes and write its JSON, so the script works the first time it meets
a GPU.
"""

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from jedi_core.presets import make_config
from jedi_core.training.schedule import schedule_epochs, total_updates

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_session.sh"
STAGES = ["ceilings", "graphs_check", "graphs", "graphs_bf16", "bench_fp32", "run_probe", "profile",
          "bench_bf16", "compile"]
#: What comes back from a remote GPU run: at most 8 files of its output folder.
MAX_RETURNED_FILES = 8
#: Stages that may skip themselves on a CPU: none (the CUDA-graph stage runs its buffers eagerly there).
MAY_SKIP: set[str] = set()


def run_script(*args, env=None, timeout=900):
    environment = {**os.environ, "PYTHON": sys.executable, **(env or {})}
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, env=environment, capture_output=True,
                          text=True, timeout=timeout)


def unpack(results: Path) -> Path:
    """The output folder's archive, unpacked beside it; each file read first is a copy of the archive's."""
    returned = sorted(os.listdir(results))
    assert returned == ["environment.json", "gpu_session.tar.gz", "stages.json", "summary.md"]
    assert len(returned) <= MAX_RETURNED_FILES and all((results / name).is_file() for name in returned)
    out = results.parent / "unpacked"
    with tarfile.open(results / "gpu_session.tar.gz") as archive:
        archive.extractall(out, filter="data")
    for name in returned[:1] + returned[2:]:
        assert (out / name).read_text() == (results / name).read_text(), name
    return out


#: The dry run's stage limits stand in for the GPU's; on a busy CPU a stage can take longer, and what is
#: tested here is that every stage works, not how fast (a hung stage still fails, at these limits).
UNHURRIED = {"TOTAL_BUDGET": "2400", **{f"BUDGET_{stage.upper()}": "600" for stage in STAGES}}


def test_cpu_dry_run_runs_every_stage(tmp_path):
    result = run_script("--cpu-dry-run", str(tmp_path / "out"), env=UNHURRIED, timeout=2700)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    out = unpack(tmp_path / "out")

    stages = json.loads((out / "stages.json").read_text())
    assert list(stages) == STAGES
    for name, state in stages.items():
        allowed = {"ok", "skipped"} if name in MAY_SKIP else {"ok"}
        assert state["state"] in allowed, (name, state, (out / "logs" / f"{name}.log").read_text()[-3000:])
        assert (out / "logs" / f"{name}.log").is_file()
        assert (out / f"{name}.json").is_file()

    env = json.loads((out / "environment.json").read_text())
    assert env["mode"] == "cpu-dry-run"
    for key in ("device", "torch", "cuda", "python", "git_commit", "commit_source", "source_sha256",
                "modules", "budgets"):
        assert key in env, key
    assert env["modules"]["torch"]["version"] == env["torch"]

    ceilings = json.loads((out / "ceilings.json").read_text())
    # A launch of a one-element kernel costs microseconds, not nothing and not a second.
    assert 0.1 < ceilings["eager_tiny_kernel_us"] < 10_000 and ceilings["graph_tiny_kernel_us"] is None
    assert ceilings["skipped_parts"]  # the CUDA-graph part, named
    for name, precision, graphs in (("bench_fp32", "fp32", False), ("bench_bf16", "bf16", False),
                                    ("graphs", "fp32", True), ("graphs_bf16", "bf16", True)):
        bench = json.loads((out / f"{name}.json").read_text())
        assert bench["jedi"]["preset"] == "smoke" and bench["pixel"]["preset"] == "smoke_diamond"
        assert bench["jedi"]["performance"]["precision"] == precision
        assert bench["jedi"]["performance"]["cuda_graphs"] is graphs
        assert bench["ratios"] and all(  # each ratio is JEDI's rate over the pixel model's, on this run
            ratio == pytest.approx(bench["jedi"][key] / bench["pixel"][key]) and ratio > 0
            for key, ratio in bench["ratios"].items())
    check = json.loads((out / "graphs_check.json").read_text())
    assert check["complete"] and check["verdict"] == "ok" and not check["capture_errors"]
    assert set(check["log_differences"]) == {"diffusion", "reward_end", "actor_critic"}
    assert all(distance["moved"] > 0 for distance in check["weight_distances"].values())  # they trained
    assert check["fresh_draws"]["diffusion"] == {"unseeded_differ": True, "seeded_equal": True}
    profile = json.loads((out / "profile.json").read_text())
    step, rollout = profile["per_imagined_step"], profile["rollout"]
    assert step["aten_calls"] == pytest.approx(rollout["aten_calls"] / profile["horizon"])
    assert step["aten_calls"] >= 1
    assert step["cuda_kernels"] is None  # no CUDA here: no kernel count, rather than a zero
    probe = json.loads((out / "run_probe.json").read_text())
    assert probe["complete"] and probe["projection"]["complete_without_evaluation"]
    assert "performance.cuda_graphs=true" in probe["overrides"]  # the real run, on the graph path
    rates, schedule, hours = probe["rates"], probe["schedule"], probe["projection"]["hours"]
    # Rates are per update and per step of this short run (each update is less than the whole probe);
    # the projection is the preset's own schedule at those rates.
    assert 0 < rates["s_per_world_model_update"] < probe["wall_s"] and 0 < rates["eval_s_per_env_step"]
    projected_to = make_config(probe["preset"], probe["overrides"])
    assert (schedule["epochs"], (schedule["world_model_updates"], schedule["actor_critic_updates"])) == (
        schedule_epochs(projected_to), total_updates(projected_to))
    assert schedule["epochs"] > probe["probe"]["epochs"]  # projected past what ran
    assert hours["world_model_updates"] == pytest.approx(
        schedule["world_model_updates"] * rates["s_per_world_model_update"] / 3600)
    assert hours["actor_critic_updates"] == pytest.approx(
        schedule["actor_critic_updates"] * rates["s_per_actor_critic_update"] / 3600)
    assert probe["projection"]["hours_without_evaluation"] == pytest.approx(sum(hours.values()))
    compiled = json.loads((out / "compile.json").read_text())
    assert compiled["complete"] and "errors" not in compiled, compiled.get("errors")
    assert compiled["measures"]["actor_critic_update"]["per_s"] > 0
    summary = (out / "summary.md").read_text()
    assert summary in result.stdout
    for name in STAGES:
        assert f"| {name} | {stages[name]['status']} |" in summary
    assert "| measure | JEDI fp32 | pixel fp32 | JEDI/pixel fp32 | JEDI bf16 |" in summary
    assert "total without evaluation" in summary
    assert "| bench, CUDA graphs |" in summary


def test_a_failed_or_hung_stage_is_recorded_and_the_others_still_run(tmp_path):
    """ceilings fails and graphs hangs past its budget (a stand-in interpreter does both): the environment is
    still recorded, each is reported as what it was, the unselected stages as not selected; exit status 1."""
    python = tmp_path / "python"
    python.write_text(f"""#!/usr/bin/env bash
case "$*" in
  *ceilings.py*) echo "stand-in failure" >&2; exit 3 ;;
  *graphs.py*) sleep 60 ;;
  *) exec {sys.executable} "$@" ;;
esac
""")
    python.chmod(0o755)
    result = run_script("--cpu-dry-run", str(tmp_path / "out"),
                        env={"PYTHON": str(python), "STAGES": "ceilings graphs", "BUDGET_GRAPHS": "1"},
                        timeout=300)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-2000:]
    out = unpack(tmp_path / "out")
    stages = json.loads((out / "stages.json").read_text())
    assert stages["ceilings"]["state"] == "failed" and stages["ceilings"]["rc"] == 3
    assert "stand-in failure" in (out / "logs" / "ceilings.log").read_text()
    assert stages["graphs"]["state"] == "timed_out"
    others = {stages[name]["state"] for name in STAGES if name not in ("ceilings", "graphs")}
    assert others == {"not_selected"}
    assert "environment.json" in os.listdir(out)
    assert "| ceilings | failed (rc 3) |" in (out / "summary.md").read_text()


def test_the_whole_run_is_projected_per_path_from_the_probe_and_each_bench(tmp_path, load_script):
    """Hours per path: the probe's other phases, plus the schedule's updates at each bench's JEDI rates."""
    summary = load_script("benchmarks/gpu_session/summary.py")
    schedule = {"world_model_updates": 36_000, "actor_critic_updates": 7_200}
    probe = {"preset": "atari100k", "schedule": schedule,
             "projection": {"hours": {"world_model_updates": 2.0, "actor_critic_updates": 3.0,
                                      "random_collection": 0.25},
                            "hours_without_evaluation": 5.5}}
    (tmp_path / "run_probe.json").write_text(json.dumps(probe))
    def bench(preset, world_model_rate, actor_critic_rate):
        return json.dumps({"jedi": {"preset": preset, "world_model_updates_per_s": world_model_rate,
                                    "actor_critic_updates_per_s": actor_critic_rate}})

    (tmp_path / "graphs.json").write_text(bench("atari100k", 20.0, 4.0))
    (tmp_path / "bench_bf16.json").write_text(bench("smoke", 1.0, 1.0))
    table = "\n".join(summary.path_projection_table(tmp_path))
    assert "| the run probe (the preset as it ships) | 2 | 3 | 0.5 | 5.5 |" in table
    # 36,000 / 20 / 3600 = 0.5 h and 7,200 / 4 / 3600 = 0.5 h, plus the probe's 0.5 h of the rest.
    assert "| bench, CUDA graphs | 0.5 | 0.5 | 0.5 | 1.5 |" in table
    assert "bf16" not in table  # measured on another preset: not comparable


def test_the_commit_measured_is_found_from_the_sources_where_git_did_not_travel(tmp_path, load_script,
                                                                               monkeypatch):
    """A copied checkout records only the hash of its sources; unpack.py finds the commit that has them,
    the newest first, and says so when none has (uncommitted changes were measured)."""
    unpack_script = load_script("benchmarks/gpu_session/unpack.py")
    environment = sys.modules[unpack_script.source_digest.__module__]
    repo = tmp_path / "repo"
    (repo / "jedi_core").mkdir(parents=True)
    (repo / "benchmarks").mkdir()
    (repo / "notes.txt").write_text("not source\n")

    def git(*args):
        return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org",
                               *args], capture_output=True, text=True, check=True).stdout.strip()

    def commit(text):
        (repo / "jedi_core" / "model.py").write_text(text)
        (repo / "benchmarks" / "bench.py").write_text("print(1)\n")
        git("add", ".")
        git("commit", "-q", "-m", text)
        return git("rev-parse", "HEAD")

    git("init", "-q")
    first = commit("x = 1\n")
    monkeypatch.setattr(environment, "ROOT", repo)
    monkeypatch.setattr(unpack_script, "ROOT", repo)
    first_sources = environment.source_sha256()
    second = commit("x = 2\n")
    assert unpack_script.commit_source_digest(first) == first_sources
    assert unpack_script.find_commit(environment.source_sha256()) == second
    assert unpack_script.find_commit(first_sources) == first
    (repo / "notes.txt").write_text("changed, but not a source\n")
    assert unpack_script.find_commit(environment.source_sha256()) == second
    (repo / "jedi_core" / "model.py").write_text("x = 3\n")
    assert unpack_script.find_commit(environment.source_sha256()) is None

    results = tmp_path / "results"
    results.mkdir()
    (tmp_path / "staged").mkdir()
    (tmp_path / "staged" / "summary.md").write_text("# Measurements\n")
    with tarfile.open(results / "gpu_session.tar.gz", "w:gz") as archive:
        archive.add(tmp_path / "staged" / "summary.md", arcname="summary.md")
    (results / "environment.json").write_text(json.dumps(
        {"device": "NVIDIA H100 80GB HBM3", "git_commit": None, "source_sha256": first_sources}))
    monkeypatch.setattr(sys, "argv", ["unpack.py", str(results), "--into", str(tmp_path / "kept")])
    assert unpack_script.main() == 0
    kept = tmp_path / "kept" / f"gpu_nvidia_h100_80gb_hbm3_{first[:7]}"
    assert (kept / "summary.md").read_text() == "# Measurements\n"
    assert json.loads((kept / "commit.json").read_text()) == {
        "git_commit": first, "how": "found by source_sha256", "uncommitted_changes": False}


def test_the_summary_keeps_the_numbers_of_a_bench_whose_other_preset_failed(tmp_path, load_script):
    summary = load_script("benchmarks/gpu_session/summary.py")
    partial = {"jedi": {"preset": "atari100k", "world_model_updates_per_s": 12.5,
                        "capture_errors": {"actor_critic": "Traceback ..."}},
               "errors": {"diamond": {"error": "RuntimeError: boom", "traceback": "Traceback ..."}},
               "settings": {"repeats": 3, "iterations": 1, "warmup": 4}}
    (tmp_path / "graphs.json").write_text(json.dumps(partial))
    table = "\n".join(summary.bench_table(tmp_path))
    assert "| world_model_updates_per_s | 12.5 | - | -x |" in table
    assert "atari100k (JEDI) and (failed) (pixel)" in table
    numbers = summary.key_numbers("graphs", partial)
    assert "capture failed, ran eagerly: jedi actor_critic" in numbers and "failed: diamond" in numbers
