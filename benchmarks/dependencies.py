"""What depends_on costs at start (issue 16): a 1000-program dependency tree against the same
programs without dependencies.

The tree has `depth` levels of programs (startsecs=0); every program of a level depends on one
program of the level before it. The figure is the wall time from launching the agent until
every process is RUNNING over XML-RPC, the median of a few runs of each.

    .venv/bin/python -m benchmarks.dependencies                  # 1000 programs, depth 10, 3 runs
    .venv/bin/python -m benchmarks.dependencies --programs 200 --runs 1
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from .daemons import Daemon

RESULTS = Path(__file__).parent / "results" / "dependencies.json"


def programs(count: int, depth: int, dependencies: bool) -> str:
    width = max(1, count // depth)
    text = []
    for i in range(count):
        level = i // width
        needs = f"depends_on=p{(level - 1) * width + i % width}\n" if dependencies and level else ""
        text.append(f"[program:p{i}]\ncommand=sleep 100000\nstartsecs=0\nstdout_logfile=NONE\n"
                    f"stderr_logfile=NONE\n{needs}\n")
    return "".join(text)


def start_time(count: int, depth: int, dependencies: bool) -> float:
    with Daemon("agent", programs(count, depth, dependencies)) as daemon:
        return daemon.all_running(count) - daemon.started_at


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--programs", type=int, default=1000)
    parser.add_argument("--depth", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the JSON goes")
    args = parser.parse_args()
    times = {kind: [start_time(args.programs, args.depth, kind == "tree") for _ in range(args.runs)]
             for kind in ("flat", "tree")}
    report = {"programs": args.programs, "depth": args.depth, "seconds": times,
              "median": {kind: statistics.median(t) for kind, t in times.items()}}
    flat, tree = report["median"]["flat"], report["median"]["tree"]
    print(f"start of {args.programs} programs: {flat:.2f} s without dependencies, {tree:.2f} s as a tree of "
          f"depth {args.depth} ({tree / flat:.2f}x)")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
