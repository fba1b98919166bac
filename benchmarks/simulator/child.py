"""The simulator as a child process, driven by control lines on its stdin (`--control`): for
benchmarks and tests that run it against real controllers."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class SimulatorProcess:
    def __init__(self, nodes: int, controllers: list[str], report: Path, *, procs: int = 1,
                 flaps_per_second: float = 0.0, seed: int = 0) -> None:
        argv = [sys.executable, "-m", "benchmarks.simulator", "--nodes", str(nodes), "--procs", str(procs),
                "--control", "--flaps-per-second", str(flaps_per_second), "--seed", str(seed),
                "--out", str(report)]
        for address in controllers:
            argv += ["--controller", address]
        self.report = report
        self.proc = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def say(self, line: str) -> None:
        """A control line: `flap NODE NAMESPEC [backoff]`, `away NODE SECONDS [reboot]`, `rates F O`."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def stop(self) -> int:
        """SIGTERM, and the exit status once it wrote its report (killed after a minute)."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def result(self) -> dict:
        """The JSON report it wrote when it stopped ({} if none)."""
        try:
            return json.loads(self.report.read_text())
        except (OSError, ValueError):
            return {}
