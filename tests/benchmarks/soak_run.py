"""Running a soak command in its short mode and reading its report (one module per soak, so that
the parallel suite runs them side by side). The bounds are the commands' own (their exit code);
here they run for a minute and a half instead of thirty."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def soak(module: str, out: Path, *args: str) -> dict:
    result = subprocess.run([sys.executable, "-m", module, "--minutes", "1.5", "--seed", "1", "--out", str(out), *args],
                            cwd=ROOT, capture_output=True, text=True, timeout=900)
    kind = module.rsplit("_", 1)[1]
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert f"{kind} soak, 1.5 min" in result.stdout and "every bound held" in result.stdout
    assert (out / f"{kind}.png").stat().st_size > 1000
    report = json.loads((out / f"{kind}.json").read_text())
    assert report["ok"] and report["checks"] and all(c["ok"] for c in report["checks"])
    return report
