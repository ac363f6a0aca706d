"""Turn the figures into a Markdown table, a JSON file and PNG charts."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

from benchmarks import caching, logins

GOALS = {
    "parallel": "wall time within 1.10x of the critical path plus the reasoning calls",
    "uneven": "uneven DAGs: tool-phase wall time within 1.10x of the critical path",
    "first_tool": "first tool call within 0.35 of the plan's generation time (20 steps)",
    "calls": "2 reasoning calls for a plan that succeeds",
    "input_tokens": "input tokens at least 3x fewer than ReAct at 10 steps and 6x at 20",
    "cost": "dollar cost at least 2x lower than ReAct at 20 steps",
    "help": "`duet --help` under 0.25x of `import langgraph.graph`, and under 0.5 s",
    "context": "largest prompt of the run within 1.2x of the largest by step 20 (summarizing)",
    "overhead": "at 200 steps, under 2x a bare LangGraph loop on the same checkpointer",
    "flat_time": "ms per step at 800 steps within 1.2x of that at 50 (chained plan)",
    "flat_size": "checkpoint KiB per step at 800 steps within 1.2x of that at 50 (chained plan)",
    "memory": "peak RSS of an 800-step run within 1.2x of a 50-step run",
    "remote": "remote execution adds at most 20 ms a step on loopback (step route)",
    "remote_parallel": "k = 16 one-second remote steps within 1.1x of the critical path, on "
                       "one executor server and on two",
    "real_http": "real HTTP: tool phase at most 1.15x bare httpx + asyncio (k = 100 and 500, "
                 "fan-out and uneven DAG)",
    "real_http_cpu": "real HTTP: orchestration CPU at most 2 ms a step above bare httpx",
    "browser": "k two-step browser tasks within 1.3x of bare Playwright (k fresh contexts of "
               "one browser) at every k",
    "browser_queue": "many more browser tasks than slots finish, every step ok (no hang)",
    "real_http_react": "real HTTP fan-out at k = 100: tool phase and CPU a step at most "
                       "ReAct's",
    "browser_order": "browser, k = 16 on 4 slots: p50 task completion at most 0.6 of the wall "
                     "time of all tasks",
}


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": str(os.cpu_count()), "python": platform.python_version(),
            "system": platform.platform()}


def markdown(results: dict[str, Any]) -> str:
    """The figures as Markdown tables, with each goal met or missed."""
    m = results["machine"]
    out = [f"Measured on {m['cores']} cores of {m['cpu']}, Python {m['python']} "
           f"(size `{results['size']}`, latency scale {results['settings']['scale']}).", ""]
    out += ["**1. Parallel speedup** (k independent steps, each the real `http_request` to a "
            "loopback server that answers after the step's duration; simulated model; "
            "seconds)", "",
            "| k | wall | critical path + reasoning | ratio | sequential | ReAct "
            "| speedup vs sequential | speedup vs ReAct |", "|---|---|---|---|---|---|---|---|"]
    for r in results["parallel_speedup"]:
        out.append(f"| {r['k']} | {r['wall_s']:.2f} | {r['critical_path_s']:.2f} | "
                   f"{r['wall_over_critical_path']:.2f} | {r['sequential_s']:.2f} | "
                   f"{r['react_s']:.2f} | {r['speedup_vs_sequential']:.2f}x | "
                   f"{r['speedup_vs_react']:.2f}x |")
    out += ["", "**2. Reasoning calls, tokens and cost per task** (Nova 2 Lite list prices)", "",
            "| steps | calls (ours / ReAct) | input tokens (ours / ReAct) | output tokens "
            "(ours / ReAct) | cost USD (ours / ReAct) | ReAct tokens / ours |",
            "|---|---|---|---|---|---|"]
    for r in results["reasoning_cost"]:
        out.append(f"| {r['steps']} | {r['ours_calls']} / {r['react_calls']} | "
                   f"{r['ours_input_tokens']} / {r['react_input_tokens']} | "
                   f"{r['ours_output_tokens']} / {r['react_output_tokens']} | "
                   f"{r['ours_cost_usd']:.5f} / {r['react_cost_usd']:.5f} | "
                   f"{r['token_ratio']:.2f}x |")
    c = results["context_growth"]
    out += ["", f"**3. Context growth** over a {c['steps']}-step run: largest prompt of the "
            f"run / largest by step {c['early_steps']} = {c['on_late_over_early']:.2f} with "
            f"summarization, {c['off_late_over_early']:.2f} without.", ""]
    out += ["**4. Long runs** (no-op tools and model, sync durability, ours with its step "
            "ledger in the store; per step: wall time, and bytes of checkpoints and pending "
            "writes)", "",
            "| checkpointer | workload | steps | ms / step | checkpoint KiB / step |",
            "|---|---|---|---|---|"]
    out += [f"| {r['backend']} | {r['workload']} | {r['steps']} | {r['ms_per_step']:.1f} | "
            f"{r['kib_per_step']:.1f} |" for r in results["long_runs"]]
    out += ["", "**5. Start-up** (median of separate processes)", "",
            "| what | seconds | vs `import langgraph.graph` |", "|---|---|---|"]
    out += [f"| {r['what']} | {r['seconds']:.2f} | {r['vs_langgraph_import']:.2f}x |"
            for r in results["startup"]]
    out += ["", "**6. Memory** (peak RSS of a process each)", "",
            "| what | MB | vs baseline |", "|---|---|---|"]
    out += [f"| {r['what']} | {r['peak_mb']:.0f} | {r['vs_baseline']:.2f}x |"
            for r in results["memory"]]
    out += ["", "**7. Uneven DAGs** (log-normal step durations, up to two dependencies a "
            "step, each the real `http_request` to the loopback server; tool phase in seconds)",
            "",
            "| k | critical path | nova-duet | waves | nova-duet / critical path "
            "| waves / critical path |", "|---|---|---|---|---|---|"]
    for r in results["uneven_dags"]:
        out.append(f"| {r['k']} | {r['critical_path_s']:.2f} | {r['ours_s']:.2f} | "
                   f"{r['waves_s']:.2f} | {r['ours_over_critical_path']:.2f} | "
                   f"{r['waves_over_critical_path']:.2f} |")
    f = results["first_tool_call"]
    out += ["", f"**8. Time to first tool call** ({f['steps']}-step plan, streamed): the first "
            f"tool started {f['first_tool_after_s']:.2f} s into a {f['plan_generation_s']:.2f} s "
            f"plan generation ({f['fraction']:.2f} of it; 1.00 without streaming); "
            f"{f['steps_started_before_plan_ended']} of {f['steps']} steps started before the "
            "plan was complete."]
    r = results["remote_execution"]
    out += ["", f"**9. Remote execution** ({r['k']} simulated browser steps of "
            f"{results['settings']['tool_s'] * results['settings']['scale']:g} s, independent, "
            "the whole plan at once, sent to the executor servers' step route; tool phase in "
            "seconds)", "",
            "| where the steps run | tool phase | critical path | ratio |", "|---|---|---|---|"]
    out += [f"| {row['how']} | {row['tool_phase_s']:.2f} | {row['critical_path_s']:.2f} | "
            f"{row['over_critical_path']:.2f} |" for row in r["rows"]]
    out += ["", f"A chain of {r['chain']} no-op steps: {r['in_process_ms_per_step']:.1f} ms a "
            f"step in-process, {r['remote_ms_per_step']:.1f} ms on an executor server "
            f"({r['overhead_ms_per_step']:.1f} ms added per remote step)."]
    out += ["", "**10. Real HTTP** (the real `http_request` against a loopback server in its "
            "own process that answers each GET after a set delay; fan-out: k GETs of "
            f"{results['real_http'][0]['critical_path_s'] * 1000:.0f} ms; uneven DAG: 20 to "
            "400 ms each, up to two dependencies among the previous five; the model answers "
            "at once with the whole plan; tool phase in seconds, CPU in ms a step)", "",
            "| k | shape | critical path | bare httpx | nova-duet | ReAct | nova-duet / bare "
            "| ReAct / bare | nova-duet / critical path | CPU bare / ours / ReAct |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    out += [f"| {r['k']} | {r['shape']} | {r['critical_path_s']:.2f} | "
            f"{r['bare_tool_phase_s']:.2f} | {r['ours_tool_phase_s']:.2f} | "
            f"{r['react_tool_phase_s']:.2f} | {r['ours_over_bare']:.2f} | "
            f"{r['react_over_bare']:.2f} | {r['ours_over_critical_path']:.2f} | "
            f"{r['bare_cpu_ms_per_step']:.2f} / {r['ours_cpu_ms_per_step']:.2f} / "
            f"{r['react_cpu_ms_per_step']:.2f} |" for r in results["real_http"]]
    fixed = results["fixed_cost"]
    out += ["", f"Fixed cost per run (`ainvoke` to the first tool call, the plan in hand, "
            f"median of {fixed['repeats']}): nova-duet {fixed['ours_ms']:.1f} ms, ReAct "
            f"{fixed['react_ms']:.1f} ms."]
    out += _browser_markdown(results["browser_sessions"])
    if "browser_logins" in results:
        out += logins.markdown(results["browser_logins"])
    if "prompt_caching" in results:
        out += caching.markdown(results["prompt_caching"])
    out += ["", "Goals:"] + [f"- {line}" for line in verdicts(results)]
    return "\n".join(out)


def _browser_markdown(b: dict[str, Any]) -> list[str]:
    """Figure 11: browser sessions against bare Playwright, and the queue."""
    out = ["", "**11. Browser sessions** (k independent tasks, each `browser_goto` then "
           "`browser_read` in a named session of its own, on the demo CRM in its own process, "
           "real Chromium; the model simulated at zero latency; median of "
           f"{b['repeats']}; seconds)", "",
           "| k | tool phase | wall (ainvoke) | with screenshots | bare Playwright | ratio |",
           "|---|---|---|---|---|---|"]
    out += [f"| {r['k']} | {r['ours_tool_phase_s']:.2f} | {r['ours_wall_s']:.2f} | "
            f"{r['screenshots_tool_phase_s']:.2f} | {r['bare_s']:.2f} | {r['ratio']:.2f}x |"
            for r in b["rows"]]
    out += ["", "More tasks than slots, on the default slots (bare Playwright: as many tasks "
            "at once); when each task finished, from the first step's start, seconds:", "",
            "| k | slots | run | p50 | p95 | all tasks | p50 / all | bare p50 | bare p95 "
            "| bare all | bare p50 / all |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    out += [f"| {q['k']} | {q['limit']} | `{q['status']}`, {q['steps']} steps "
            f"({', '.join(q['statuses'])}), {q['waited']} waited | {q['ours_p50_s']:.2f} | "
            f"{q['ours_p95_s']:.2f} | {q['ours_wall_s']:.2f} | {q['ours_p50_over_wall']:.2f} | "
            f"{q['bare_p50_s']:.2f} | {q['bare_p95_s']:.2f} | {q['bare_wall_s']:.2f} | "
            f"{q['bare_p50_over_wall']:.2f} |" for q in b["queues"]]
    return out


def verdicts(results: dict[str, Any]) -> list[str]:
    """Each goal, met or missed, with the figure that decides it."""
    def line(met: bool, goal: str, figure: str) -> str:
        return _verdict(met, GOALS[goal], figure)

    worst = max(r["wall_over_critical_path"] for r in results["parallel_speedup"])
    uneven = max(r["ours_over_critical_path"] for r in results["uneven_dags"])
    fraction = results["first_tool_call"]["fraction"]
    cost = {r["steps"]: r for r in results["reasoning_cost"]}
    calls = sorted({r["ours_calls"] for r in results["reasoning_cost"]})
    fewer = {n: r["react_input_tokens"] / r["ours_input_tokens"] for n, r in cost.items()}
    context = results["context_growth"]["on_late_over_early"]
    lines = [
        line(worst <= 1.10, "parallel", f"worst {worst:.2f}"),
        line(uneven <= 1.10, "uneven", f"worst {uneven:.2f}"),
        line(fraction <= 0.35, "first_tool", f"{fraction:.2f}"),
        line(calls == [2], "calls", f"{calls}"),
    ]
    if 10 in fewer and 20 in fewer:
        lines.append(line(fewer[10] >= 3 and fewer[20] >= 6, "input_tokens",
                          f"{fewer[10]:.2f}x at 10, {fewer[20]:.2f}x at 20"))
    if 20 in cost:
        lines.append(line(cost[20]["cost_ratio"] >= 2, "cost", f"{cost[20]['cost_ratio']:.2f}x"))
    startup = {r["what"]: r for r in results["startup"]}
    help_row = startup["duet --help"]
    lines.append(line(help_row["vs_langgraph_import"] < 0.25 and help_row["seconds"] < 0.5,
                      "help", f"{help_row['vs_langgraph_import']:.2f}x, "
                              f"{help_row['seconds']:.2f} s"))
    lines.append(line(context <= 1.2, "context", f"{context:.2f}"))
    browser = results["browser_sessions"]
    worst_browser = max(r["ratio"] for r in browser["rows"])
    lines.append(line(worst_browser <= 1.3, "browser", f"worst {worst_browser:.2f}x"))
    queues = browser["queues"]
    lines.append(line(all(q["status"] == "completed" and q["statuses"] == ["ok"]
                          for q in queues),
                      "browser_queue", ", ".join(f"{q['k']} tasks on {q['limit']} slots: "
                                                 f"{q['status']}" for q in queues)))
    order = next((q for q in queues if q["k"] == 16), None)
    if order is not None:
        lines.append(line(order["ours_p50_over_wall"] <= 0.6, "browser_order",
                          f"{order['ours_p50_over_wall']:.2f}; bare Playwright "
                          f"{order['bare_p50_over_wall']:.2f}"))
    for name, module in (("prompt_caching", caching), ("browser_logins", logins)):
        if name in results:
            lines += [_verdict(*verdict) for verdict in module.verdicts(results[name])]
    return lines + _long_run_verdicts(results, line)


def _verdict(met: bool, goal: str, figure: str) -> str:
    return f"{'met' if met else 'MISSED'}: {goal} ({figure})"


def _long_run_verdicts(results: dict[str, Any], line: Any) -> list[str]:
    """Figure 4's goals on each checkpointer, and figure 6's memory goal."""
    lines = []
    rows = results["long_runs"]
    for backend in dict.fromkeys(r["backend"] for r in rows):
        chained = {r["steps"]: r for r in rows
                   if r["backend"] == backend and r["workload"] == "chained plan"}
        bare = next(r for r in rows
                    if r["backend"] == backend and r["workload"] == "bare LangGraph loop")
        short, long = chained[min(chained)], chained[max(chained)]
        time_ratio = long["ms_per_step"] / short["ms_per_step"]
        size_ratio = long["kib_per_step"] / short["kib_per_step"]
        at_bare = chained.get(bare["steps"])
        lines += [line(time_ratio <= 1.2, "flat_time", f"{backend}: {time_ratio:.2f}"),
                  line(size_ratio <= 1.2, "flat_size", f"{backend}: {size_ratio:.2f}")]
        if at_bare:
            ratio = at_bare["ms_per_step"] / bare["ms_per_step"]
            lines.append(line(ratio < 2, "overhead",
                              f"{backend}: {ratio:.2f}x, {at_bare['ms_per_step']:.1f} ms"))
    http = results["real_http"]
    worst = max(http, key=lambda r: r["ours_over_bare"])
    lines.append(line(worst["ours_over_bare"] <= 1.15, "real_http",
                      f"worst {worst['ours_over_bare']:.2f}, {worst['shape']} at "
                      f"k = {worst['k']}"))
    cpu = max(r["cpu_ms_per_step_above_bare"] for r in http)
    lines.append(line(cpu <= 2.0, "real_http_cpu", f"worst {cpu:.2f} ms above"))
    fan = next((r for r in http if r["k"] == 100 and r["shape"] == "fan-out"), None)
    if fan is not None:
        lines.append(line(fan["ours_tool_phase_s"] <= fan["react_tool_phase_s"]
                          and fan["ours_cpu_ms_per_step"] <= fan["react_cpu_ms_per_step"],
                          "real_http_react",
                          f"{fan['ours_tool_phase_s']:.2f} s against "
                          f"{fan['react_tool_phase_s']:.2f} s, {fan['ours_cpu_ms_per_step']:.2f} "
                          f"ms a step against {fan['react_cpu_ms_per_step']:.2f}"))
    remote = results["remote_execution"]
    added = remote["overhead_ms_per_step"]
    lines.append(line(added <= 20, "remote", f"{added:.1f} ms"))
    spread = {row["how"]: row["over_critical_path"] for row in remote["rows"]
              if row["how"] != "in-process"}
    lines.append(line(max(spread.values()) <= 1.1, "remote_parallel",
                      ", ".join(f"{how}: {ratio:.2f}" for how, ratio in spread.items())))
    runs = [r for r in results["memory"] if r.get("steps")]
    ratio = runs[-1]["peak_mb"] / runs[0]["peak_mb"]
    lines.append(line(ratio <= 1.2, "memory",
                      f"{runs[-1]['steps']} / {runs[0]['steps']} steps: {ratio:.2f}"))
    return lines


def charts(results: dict[str, Any], folder: Path) -> list[Path]:
    """PNG charts of figures 1 to 4, 7 and 10."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    rows = results["parallel_speedup"]
    fig, ax = plt.subplots(figsize=(6, 4))
    ks = [r["k"] for r in rows]
    for key, label in (("wall_s", "nova-duet (parallel)"), ("sequential_s", "same graph, "
                       "sequential"), ("react_s", "ReAct"), ("critical_path_s",
                       "critical path + reasoning")):
        ax.plot(ks, [r[key] for r in rows], marker="o", label=label)
    ax.set(xlabel="independent steps (k)", ylabel="seconds", title="1. Parallel speedup")
    ax.legend()
    paths.append(_save(fig, folder / "parallel_speedup.png"))

    rows = results["reasoning_cost"]
    fig, ax = plt.subplots(figsize=(6, 4))
    width = 0.35
    xs = range(len(rows))
    ax.bar([x - width / 2 for x in xs], [r["ours_input_tokens"] + r["ours_output_tokens"]
                                         for r in rows], width, label="nova-duet")
    ax.bar([x + width / 2 for x in xs], [r["react_input_tokens"] + r["react_output_tokens"]
                                         for r in rows], width, label="ReAct")
    ax.set_xticks(list(xs), [f"{r['steps']} steps" for r in rows])
    ax.set(ylabel="tokens per task", title="2. Reasoning tokens per task")
    ax.legend()
    paths.append(_save(fig, folder / "reasoning_tokens.png"))

    series = results["context_growth"]["series"]
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, values in series.items():
        ax.plot(range(1, len(values) + 1), values, ".", markersize=3,
                label=label.replace("_", " "))
    ax.set(xlabel="reasoning call", ylabel="prompt tokens", title="3. Context growth")
    ax.legend()
    paths.append(_save(fig, folder / "context_growth.png"))

    rows = results["uneven_dags"]
    fig, ax = plt.subplots(figsize=(6, 4))
    ks = [r["k"] for r in rows]
    for key, label in (("critical_path_s", "critical path"), ("ours_s", "nova-duet (DAG)"),
                       ("waves_s", "waves")):
        ax.plot(ks, [r[key] for r in rows], marker="o", label=label)
    ax.set(xlabel="steps (k)", ylabel="tool phase, seconds", title="7. Uneven DAGs")
    ax.legend()
    paths.append(_save(fig, folder / "uneven_dags.png"))

    rows = results["long_runs"]
    sizes = [min(r["steps"] for r in rows), max(r["steps"] for r in rows)]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for backend, workload in dict.fromkeys((r["backend"], r["workload"]) for r in rows):
        series = [r for r in rows if (r["backend"], r["workload"]) == (backend, workload)]
        bare = len(series) == 1  # one size, drawn across the figure as a reference
        steps = sizes if bare else [r["steps"] for r in series]
        for ax, key in zip(axes, ("ms_per_step", "kib_per_step"), strict=True):
            values = [series[0][key]] * 2 if bare else [r[key] for r in series]
            ax.plot(steps, values, "--" if bare else "-", marker="o",
                    label=f"{workload} ({backend})")
    steps = sorted({r["steps"] for r in rows})
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xticks(steps, [str(n) for n in steps])
        ax.minorticks_off()
    axes[0].set(xlabel="steps in the run", ylabel="ms per step", title="4. Time per step")
    axes[1].set(yscale="log", xlabel="steps in the run",
                ylabel="checkpoint KiB per step", title="4. Checkpoint bytes per step")
    axes[1].legend(fontsize=7)
    paths.append(_save(fig, folder / "overhead.png"))

    rows = results["real_http"]
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.27
    xs = range(len(rows))
    for offset, (who, label) in zip((-width, 0, width), (("bare", "bare httpx + asyncio"),
                                    ("ours", "nova-duet"), ("react", "ReAct (create_agent)")),
                                    strict=True):
        ax.bar([x + offset for x in xs], [r[f"{who}_tool_phase_s"] for r in rows], width,
               label=label)
    ax.set_xticks(list(xs), [f"{r['shape']}\nk = {r['k']}" for r in rows])
    ax.set(ylabel="tool phase, seconds", title="10. Real HTTP")
    ax.legend()
    paths.append(_save(fig, folder / "real_http.png"))
    return paths


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def write(results: dict[str, Any], folder: Path) -> Path:
    """Write `<size>.json` and `<size>.md` to `folder`; return the JSON path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{results['size']}.json"
    path.write_text(json.dumps(results, indent=1))
    (folder / f"{results['size']}.md").write_text(markdown(results) + "\n")
    return path


# Figures with a table and goals of their own, which a run of just them (`--only ... --save`)
# writes beside their data.
ALONE = {"browser_logins": logins}


def write_only(results: dict[str, Any], folder: Path) -> list[Path]:
    """Write each figure of a run of only some (`run_only`'s results, with `machine`) to
    `<size>-<figure>.json` in `folder`, with the size and the machine; a figure of `ALONE`
    also to `<size>-<figure>.md`, its table and goals. Returns the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    m, paths = results["machine"], []
    for name, data in results.items():
        if name in ("size", "machine"):
            continue
        path = folder / f"{results['size']}-{name}.json"
        path.write_text(json.dumps({"size": results["size"], "machine": m, name: data},
                                   indent=1))
        paths.append(path)
        if name in ALONE:
            module = ALONE[name]
            lines = [f"Measured on {m['cores']} cores of {m['cpu']}, Python {m['python']} "
                     f"(size `{results['size']}`, this figure alone).", *module.markdown(data),
                     "", "Goals:", *(f"- {_verdict(*v)}" for v in module.verdicts(data))]
            paths.append(folder / f"{results['size']}-{name}.md")
            paths[-1].write_text("\n".join(lines) + "\n")
    return paths
