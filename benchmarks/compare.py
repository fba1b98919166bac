"""Run every scenario against stock supervisord 4.3.0 and the agent, alternating A/B, and report.

    .venv/bin/python -m benchmarks.compare [--quick] [--runs N] [--only NAME ...] [--out DIR]

Prints a table of medians and ratios (agent / supervisord), writes results.json with every raw
figure and the machine description, and ratios.png with the ratios against their targets.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .scenarios import SCENARIOS, Scenario

KINDS = ("supervisord", "agent")


def machine() -> dict[str, object]:
    return {"cores": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version(),
            "machine": platform.machine(), "when": time.strftime("%Y-%m-%d %H:%M:%S")}


def run_scenario(scenario: Scenario, runs: int, quick: bool, console: Console) -> dict[str, object]:
    raw: dict[str, list[dict[str, float]]] = {kind: [] for kind in KINDS}
    errors: dict[str, str] = {}
    for i in range(runs):
        order = KINDS if i % 2 == 0 else tuple(reversed(KINDS))  # alternate who goes first
        for kind in order:
            if kind in errors:
                continue
            console.log(f"{scenario.name}: run {i + 1}/{runs} {kind}")
            try:
                raw[kind].append(scenario.run(kind, quick))
            except Exception as exc:  # a scenario a daemon cannot do is reported, not fatal
                errors[kind] = f"{type(exc).__name__}: {exc}"
    metrics = {}
    for metric in scenario.metrics:
        entry: dict[str, object] = {"unit": metric.unit, "target": metric.target,
                                    "higher_is_better": metric.higher_is_better}
        for kind in KINDS:
            values = [r[metric.name] for r in raw[kind]]
            if values:
                entry[kind] = {"median": statistics.median(values), "min": min(values), "max": max(values),
                               "runs": values}
        if "supervisord" in entry and "agent" in entry:
            base = entry["supervisord"]["median"]  # type: ignore[index]
            value = entry["agent"]["median"]  # type: ignore[index]
            # Both zero (an idle CPU figure below the clock tick in a short window) is a tie.
            ratio = value / base if base else (1.0 if value == 0 else float("inf"))
            entry["ratio"] = ratio
            entry["met"] = metric.met(ratio)
        metrics[metric.name] = entry
    return {"metrics": metrics, "errors": errors}


def table(results: dict[str, dict]) -> Table:
    t = Table(title="agent / supervisord 4.3.0 (medians; min-max in brackets)")
    for column in ("scenario", "figure", "supervisord", "agent", "ratio", "target", ""):
        t.add_column(column, justify="left" if column in ("scenario", "figure") else "right")

    def cell(entry: dict, kind: str) -> str:
        if kind not in entry:
            return "-"
        v = entry[kind]
        return f"{v['median']:.4g} [{v['min']:.3g}-{v['max']:.3g}]"
    for name, result in results.items():
        for metric, entry in result["metrics"].items():
            ratio = entry.get("ratio")
            bound = (">=" if entry["higher_is_better"] else "<=") + f" {entry['target']}"
            verdict = "" if ratio is None else ("[green]met" if entry["met"] else "[red]missed")
            t.add_row(name, f"{metric} ({entry['unit']})", cell(entry, "supervisord"), cell(entry, "agent"),
                      "-" if ratio is None else f"{ratio:.3f}", bound, verdict)
        for kind, error in result["errors"].items():
            t.add_row(name, f"[red]{kind} failed", error[:60], "", "", "", "")
    return t


def chart(results: dict[str, dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, ratios, targets, colours = [], [], [], []
    for name, result in results.items():
        for metric, entry in result["metrics"].items():
            if "ratio" in entry:
                labels.append(f"{name}\n{metric}")
                ratios.append(entry["ratio"])
                targets.append(entry["target"])
                colours.append("tab:green" if entry["met"] else "tab:red")
    fig, ax = plt.subplots(figsize=(max(8, len(labels) * 0.9), 5))
    ax.bar(range(len(labels)), ratios, color=colours)
    ax.scatter(range(len(labels)), targets, marker="_", s=600, color="black", label="target")
    ax.set_yscale("log")
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("agent / supervisord (log scale)")
    ax.axhline(1.0, color="grey", linewidth=0.5)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small counts and short windows")
    parser.add_argument("--runs", type=int, default=None, help="runs per daemon (default 3, quick 1)")
    parser.add_argument("--only", nargs="*", default=None, help="scenario names to run")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    runs = args.runs or (1 if args.quick else 3)
    console = Console(stderr=True)
    selected = [s for s in SCENARIOS if not args.only or s.name in args.only]
    if not selected:
        console.print(f"no scenario named {args.only}; known: {', '.join(s.name for s in SCENARIOS)}")
        return 2
    results = {s.name: run_scenario(s, runs, args.quick, console) for s in selected}
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"machine": machine(), "quick": args.quick, "runs": runs, "scenarios": results}
    (args.out / "results.json").write_text(json.dumps(report, indent=2))
    chart(results, args.out / "ratios.png")
    Console(width=150).print(table(results))
    Console().print(f"machine: {report['machine']}\nwrote {args.out / 'results.json'} and {args.out / 'ratios.png'}")
    failed = any(r["errors"] for r in results.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
