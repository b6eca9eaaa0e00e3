"""The summary of one ``benchmarks/gpu_session.sh`` run: each stage's status and key numbers, the JEDI/pixel
bench table in fp32, bf16 and with CUDA graphs, the run projection, and the whole run's hours per path.

    python benchmarks/gpu_session/summary.py OUT_DIR --stage-order "ceilings bench_fp32 ..."

Reads ``OUT_DIR/logs/stages.tsv`` (how each stage ended, written by the shell script) and the stages' JSON;
writes ``OUT_DIR/stages.json`` and ``OUT_DIR/summary.md`` and prints the latter. Exits 1 if a stage failed
or timed out (a skipped stage is no failure).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

#: A stage's JSON output, by stage name.
OUTPUTS = {"ceilings": "ceilings.json", "graphs_check": "graphs_check.json", "graphs": "graphs.json",
           "graphs_bf16": "graphs_bf16.json",
           "bench_fp32": "bench_fp32.json", "run_probe": "run_probe.json", "profile": "profile.json",
           "bench_bf16": "bench_bf16.json", "compile": "compile.json"}
TIMED_OUT = {124, 137}  # timeout(1): TERM sent; KILL sent after the grace period


def load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def stage_states(out: Path, order: list[str]) -> dict[str, dict]:
    rows = {}
    tsv = out / "logs" / "stages.tsv"
    for line in tsv.read_text().splitlines() if tsv.is_file() else []:
        name, rc, seconds, limit, reason = (line.split("\t") + [""] * 5)[:5]
        rows[name] = {"rc": int(rc) if rc else None, "seconds": int(seconds or 0), "limit_s": int(limit or 0),
                      "reason": reason}
    states = {}
    for name in order:
        row = rows.get(name, {"rc": None, "seconds": 0, "limit_s": 0, "reason": "not run (script stopped?)"})
        output = out / OUTPUTS.get(name, f"{name}.json")
        data = load(output)
        state = {**row, "json": output.name if output.is_file() else None, "log": f"logs/{name}.log"}
        if row["rc"] is None:
            if row["reason"] == "not selected":
                state["state"] = "not_selected"
                state["status"] = "not selected" + (" (an earlier run's result)" if data else "")
            else:
                state["state"], state["status"] = "skipped", f"skipped: {row['reason']}"
        elif row["rc"] in TIMED_OUT:
            state["state"], state["status"] = "timed_out", f"timed out after {row['seconds']} s"
        elif row["rc"] != 0:
            state["state"], state["status"] = "failed", f"failed (rc {row['rc']})"
        elif data is None:
            state["state"], state["status"] = "failed", "failed (no JSON written)"
        elif "stage_skipped" in data:
            state["state"], state["status"] = "skipped", f"skipped: {data['stage_skipped']}"
        else:
            state["state"], state["status"] = "ok", "ok"
        states[name] = state
    return states


def number(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, (int, float)):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.{digits}g}"
    return str(value)


def key_numbers(name: str, data: dict | None) -> str:
    """A few numbers per stage for the status table (partial JSON of a stopped stage included)."""
    if not data:
        return ""
    if "stage_skipped" in data:
        return ""
    if name == "ceilings":
        matmul = next((f"{number(v)} TFLOP/s ({k.removeprefix('matmul_TFLOPs_').replace('_', ', ')})"
                       for k, v in data.items() if k.startswith("matmul_TFLOPs")), "")
        return (f"tiny kernel {number(data.get('eager_tiny_kernel_us'))} us eager / "
                f"{number(data.get('graph_tiny_kernel_us'))} us in a CUDA graph; copy "
                f"{number(data.get('copy_GBps_read_plus_write'))} GB/s; matmul {matmul}")
    if name == "graphs_check":
        if not data.get("complete"):
            return "incomplete"
        replays = ", ".join(f"{kind} {number(times.get('replay_ms'))} ms "
                            f"(eager {number(times.get('eager_update_ms'))})"
                            for kind, times in data.get("device_ms", {}).items())
        failed = ", ".join(data.get("capture_errors", {}))
        return (f"{data.get('verdict')}; replays: {replays}"
                + (f"; capture failed, ran eagerly: {failed}" if failed else ""))
    if name.startswith(("bench", "graphs")):
        jedi, ratios = data.get("jedi", {}), data.get("ratios", {})
        text = (f"JEDI {number(jedi.get('world_model_updates_per_s'))} WM upd/s, "
                f"{number(jedi.get('actor_critic_updates_per_s'))} AC upd/s; JEDI/pixel "
                f"{number(ratios.get('world_model_updates_per_s'))}x WM, "
                f"{number(ratios.get('actor_critic_updates_per_s'))}x AC")
        fell_back = [f"{role} {part}" for role in ("jedi", "pixel")
                     for part in data.get(role, {}).get("capture_errors", {})]
        failed = list(data.get("errors", {}))
        return (text + (f"; capture failed, ran eagerly: {', '.join(fell_back)}" if fell_back else "")
                + (f"; failed: {', '.join(failed)} (traceback in the JSON)" if failed else ""))
    if name == "profile":
        step = data.get("per_imagined_step", {})
        rollout = data.get("rollout", {})
        return (f"{number(step.get('cuda_kernels'))} kernels, {number(step.get('aten_calls'))} aten calls, "
                f"{number(step.get('wall_ms'))} ms per imagined step (batch {data.get('batch')}); "
                f"device busy {number(rollout.get('device_busy_share'))} of the wall time")
    if name == "run_probe":
        rates, projection = data.get("rates", {}), data.get("projection", {})
        text = (f"{number(rates.get('s_per_world_model_update'))} s/WM upd, "
                f"{number(rates.get('s_per_actor_critic_update'))} s/AC upd, "
                f"{number(projection.get('hours_without_evaluation'))} h projected without evaluation")
        return text + ("" if data.get("complete") else " (incomplete)")
    if name == "compile":
        parts = [f"stopped: {data['stopped']}"] if "stopped" in data else []
        for measure, record in data.get("measures", {}).items():
            if "error" in record:
                parts.append(f"{measure}: {record['error'][:160]}")
            elif "first_call_s" not in record:
                parts.append(f"{measure}: eager {number(record.get('eager_per_s'))}/s, "
                             "no compiled call finished")
            else:
                parts.append(f"{measure}: first call {number(record.get('first_call_s'))} s, "
                             f"{number(record.get('per_s'))}/s ({number(record.get('speedup_over_eager'))}x "
                             "eager)")
        return "; ".join(parts)
    return ""


def bench_table(out: Path) -> list[str]:
    files = (("fp32", "bench_fp32.json"), ("bf16", "bench_bf16.json"), ("graphs", "graphs.json"),
             ("graphs bf16", "graphs_bf16.json"))
    runs = {label: load(out / file) for label, file in files}
    runs = {label: data for label, data in runs.items() if data and ("jedi" in data or "pixel" in data)}
    if not runs:
        return []
    keys = []
    for data in runs.values():  # a preset that failed leaves the other's numbers, and no ratios
        measured = data.get("ratios") or {key: value for side in ("jedi", "pixel")
                                          for key, value in data.get(side, {}).items()
                                          if isinstance(value, (int, float)) and not isinstance(value, bool)}
        keys += [key for key in measured if key not in keys]
    header = ["measure"]
    for label in runs:
        header += [f"JEDI {label}", f"pixel {label}", f"JEDI/pixel {label}"]
    if "fp32" in runs:
        header += [f"JEDI {label}/fp32" for label in runs if label != "fp32"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key in keys:
        row = [key]
        for data in runs.values():
            row += [number(data.get("jedi", {}).get(key)), number(data.get("pixel", {}).get(key)),
                    number(data.get("ratios", {}).get(key)) + "x"]
        if "fp32" in runs:
            base = runs["fp32"].get("jedi", {}).get(key)
            for label, data in runs.items():
                if label != "fp32":
                    value = data.get("jedi", {}).get(key)
                    row.append(number(value / base) + "x" if value is not None and base else "-")
        lines.append("| " + " | ".join(row) + " |")
    first = next(iter(runs.values()))
    settings, jedi, pixel = first.get("settings", {}), first.get("jedi", {}), first.get("pixel", {})
    lines.append(f"\nPresets {jedi.get('preset', '(failed)')} (JEDI) and {pixel.get('preset', '(failed)')} "
                 f"(pixel); median of {settings.get('repeats')} x {settings.get('iterations')} after "
                 f"{settings.get('warmup')} warm-up; memory: "
                 f"{jedi.get('memory_kind', pixel.get('memory_kind'))}.")
    return lines


def probe_table(out: Path) -> list[str]:
    data = load(out / "run_probe.json")
    if not data or "projection" not in data:
        return []
    rates, projection, schedule = data["rates"], data["projection"], data.get("schedule", {})
    lines = [f"Run probe: {data.get('preset')} on {data.get('game')}, {data['probe']['epochs']} short epochs "
             f"({'complete' if data.get('complete') else 'INCOMPLETE'}, {number(data.get('wall_s'))} s); "
             f"the full schedule: {schedule.get('epochs')} epochs, {schedule.get('world_model_updates'):,} "
             f"world-model and {schedule.get('actor_critic_updates'):,} actor-critic updates, "
             f"{schedule.get('evaluation_episodes')} evaluation games.", "",
             "| phase | measured | projected hours |", "|---|---|---|"]
    measured = {"world_model_updates": f"{number(rates.get('s_per_world_model_update'))} s per update",
                "actor_critic_updates": f"{number(rates.get('s_per_actor_critic_update'))} s per update",
                "collection_and_bookkeeping": f"{number(rates.get('rest_s_per_epoch'))} s per epoch",
                "random_collection": f"{number(rates.get('random_s_per_step'))} s per step",
                "checkpoints": f"{number(rates.get('checkpoint_s'))} s each"}
    for key, text in measured.items():
        lines.append(f"| {key.replace('_', ' ')} | {text} | {number(projection['hours'].get(key))} |")
    lines.append(f"| total without evaluation | | {number(projection.get('hours_without_evaluation'))} |")
    collecting = rates.get("mean_game_steps_while_collecting")
    for steps, hours in projection.get("evaluation_hours_if_mean_game_steps_is", {}).items():
        mean = (" (the mean game while collecting)"
                if collecting is not None and round(collecting) == int(steps) else "")
        lines.append(f"| evaluation at {steps} steps a game{mean} | "
                     f"{number(rates.get('eval_s_per_env_step'))} s per env step | {number(hours)} |")
    return lines


def path_projection_table(out: Path) -> list[str]:
    """The whole run's hours per path: the run probe's collection, checkpoints and bookkeeping, plus the
    schedule's updates at each bench's JEDI rates (eager fp32, bf16, CUDA graphs), where the bench measured
    the probe's preset."""
    probe = load(out / "run_probe.json")
    if not probe or "projection" not in probe:
        return []
    hours, schedule = probe["projection"]["hours"], probe["schedule"]
    if "world_model_updates" not in hours or "actor_critic_updates" not in hours:
        return []
    total = probe["projection"]["hours_without_evaluation"]
    rest = total - hours["world_model_updates"] - hours["actor_critic_updates"]
    lines = ["| path | world-model updates (h) | actor-critic updates (h) | rest of the run (h) "
             "| total without evaluation (h) |", "|---|---|---|---|---|",
             f"| the run probe (the preset as it ships) | {number(hours['world_model_updates'])} | "
             f"{number(hours['actor_critic_updates'])} | {number(rest)} | "
             f"{number(total)} |"]
    for label, file in (("bench, fp32", "bench_fp32.json"), ("bench, bf16", "bench_bf16.json"),
                        ("bench, CUDA graphs", "graphs.json"),
                        ("bench, CUDA graphs, bf16", "graphs_bf16.json")):
        jedi = (load(out / file) or {}).get("jedi", {})
        world_model_rate, actor_critic_rate = (jedi.get("world_model_updates_per_s"),
                                               jedi.get("actor_critic_updates_per_s"))
        if jedi.get("preset") != probe.get("preset") or not world_model_rate or not actor_critic_rate:
            continue
        world_model_hours = schedule["world_model_updates"] / world_model_rate / 3600
        actor_critic_hours = schedule["actor_critic_updates"] / actor_critic_rate / 3600
        lines.append(f"| {label} | {number(world_model_hours)} | {number(actor_critic_hours)} "
                     f"| {number(rest)} | {number(world_model_hours + actor_critic_hours + rest)} |")
    return [f"A whole {probe.get('preset')} run per path (JEDI; evaluation is in the table above):", "",
            *lines]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out")
    parser.add_argument("--stage-order", default=" ".join(OUTPUTS))
    parser.add_argument("--mode", default="gpu")
    parser.add_argument("--total-budget", type=int, default=None)
    parser.add_argument("--elapsed", type=int, default=None)
    parser.add_argument("--quiet", action="store_true", help="write the files, print nothing")
    args = parser.parse_args()
    out = Path(args.out)
    states = stage_states(out, args.stage_order.split())
    env = load(out / "environment.json") or {}
    commit = env.get("git_commit") or (f"not recorded (sources {str(env.get('source_sha256'))[:12]}: "
                                       "benchmarks/gpu_session/unpack.py finds it)")
    lines = [f"# Measurements ({args.mode})", "",
             f"{env.get('device', '?')}; torch {env.get('torch', '?')}, CUDA {env.get('cuda')}; Python "
             f"{env.get('python', '?')}; commit {commit}{' (with changes)' if env.get('git_dirty') else ''}; "
             f"{env.get('date', '')}. Wall time {args.elapsed} s of a {args.total_budget} s budget.", "",
             "| stage | status | seconds (limit) | key numbers |", "|---|---|---|---|"]
    for name, state in states.items():
        data = load(out / state["json"]) if state["json"] else None
        lines.append(f"| {name} | {state['status']} | {state['seconds']} ({state['limit_s']}) | "
                     f"{key_numbers(name, data).replace('|', '/')} |")
    for block in (bench_table(out), probe_table(out), path_projection_table(out)):
        if block:
            lines += ["", *block]
    text = "\n".join(lines) + "\n"
    (out / "summary.md").write_text(text)
    (out / "stages.json").write_text(json.dumps(states, indent=1))
    if not args.quiet:
        print(text)
    return 1 if any(state["state"] in ("failed", "timed_out") for state in states.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
