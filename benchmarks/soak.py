"""What the soak tests share: a daemon's footprint read from /proc, the bounds they check, and the
report (samples as JSON, a chart, a one-paragraph verdict, the exit code).

A soak run has a warm-up (minute 5 of a full run; the first third of a short one) after which
memory, descriptors and tasks must stay flat while the churn goes on. Flat is judged on growth
between the warm-up and the end, not on absolute figures: other work shares the machine.
"""

from __future__ import annotations

import json
import os
import platform
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .daemons import usage

RESULTS = Path(__file__).parent / "results" / "soak"
FULL_WARMUP_MINUTES = 5.0
FULL_RSS_GROWTH = 0.05


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def footprint(pid: int) -> dict[str, float]:
    """RSS (MiB) and open descriptors of a live process."""
    return {"rss_mib": usage(pid).rss_bytes / 2**20, "fds": open_fds(pid)}


def warmup_seconds(minutes: float) -> float:
    """Minute 5 of a run of at least 15 minutes; the first third of a shorter one."""
    return FULL_WARMUP_MINUTES * 60 if minutes >= 3 * FULL_WARMUP_MINUTES else minutes * 60 / 3


def rss_bound(minutes: float) -> float:
    """5 % for a full run. A short run's warm-up point is seconds after start, while the
    allocator's arenas, the log buffers and the per-connection state of the clients are still
    reaching their working size; that settling (a few MiB on a ~100 MiB daemon) is what the
    looser bound allows, and a leak fed by the churn still breaks it within a minute or two."""
    return FULL_RSS_GROWTH if minutes >= 3 * FULL_WARMUP_MINUTES else 0.15


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class Report:
    kind: str
    minutes: float
    warmup_s: float
    samples: list[dict[str, float]] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    figures: dict[str, object] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    def sample(self, values: dict[str, float]) -> dict[str, float]:
        entry = {"t": round(time.monotonic() - self.started, 2), **values}
        self.samples.append(entry)
        return entry

    def check(self, name: str, ok: bool, detail: str) -> None:
        self.checks.append(Check(name, ok, detail))

    def at(self, t: float, key: str, among: Callable[[dict], bool] = lambda s: True, count: int = 5) -> float:
        """The median of `key` over the `count` samples taken from time t on (that pass `among`)."""
        values = [s[key] for s in self.samples if s["t"] >= t and key in s and among(s)][:count]
        if not values:
            raise ValueError(f"no {key} sample after {t:.0f}s")
        return statistics.median(values)

    def last(self, key: str, among: Callable[[dict], bool] = lambda s: True, count: int = 5) -> float:
        values = [s[key] for s in self.samples if key in s and among(s)][-count:]
        if not values:
            raise ValueError(f"no {key} sample")
        return statistics.median(values)

    def check_growth(self, key: str, bound: float, label: str, until: float) -> tuple[float, float]:
        """`key` at the warm-up against its end, both while the churn runs (samples up to `until`
        seconds): grown by at most `bound` (a fraction). Memory is compared under the same load;
        once the churn stops the allocator's high-water mark shows, not what is held."""
        start, end = self.at(self.warmup_s, key), self.last(key, lambda s: s["t"] <= until)
        growth = end / start - 1
        self.check(f"{label} growth", growth <= bound,
                   f"{label} {start:.1f} after warm-up, {end:.1f} at the end: {growth:+.1%} (bound {bound:.0%})")
        return start, end

    def check_flat(self, key: str, slack: float, label: str, among: Callable[[dict], bool] = lambda s: True,
                   why: str = "") -> tuple[float, float]:
        start, end = self.at(self.warmup_s, key, among), self.last(key, among)
        self.check(f"{label} flat", end - start <= slack,
                   f"{label} {start:.0f} after warm-up, {end:.0f} at the end (slack {slack:.0f}{why})")
        return start, end

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def verdict(self) -> str:
        broken = [c for c in self.checks if not c.ok]
        head = (f"{self.kind} soak, {self.minutes:g} min, {len(self.samples)} samples, warm-up {self.warmup_s:.0f}s: "
                + ("every bound held. " if not broken else f"{len(broken)} bound(s) broken: "
                   + "; ".join(c.name for c in broken) + ". "))
        return head + " ".join(f"{c.detail}{'' if c.ok else ' [BROKEN]'}." for c in self.checks)

    def write(self, out: Path, panels: list[tuple[str, list[str]]]) -> None:
        out.mkdir(parents=True, exist_ok=True)
        body = {"kind": self.kind, "minutes": self.minutes, "warmup_s": self.warmup_s, "ok": self.ok,
                "machine": {"cores": os.cpu_count(), "kernel": platform.release(),
                            "python": platform.python_version(), "when": time.strftime("%Y-%m-%d %H:%M:%S")},
                "figures": self.figures, "checks": [asdict(c) for c in self.checks], "samples": self.samples}
        (out / f"{self.kind}.json").write_text(json.dumps(body, indent=1))
        chart(self, panels, out / f"{self.kind}.png")


def chart(report: Report, panels: list[tuple[str, list[str]]], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 2.4 * len(panels)), sharex=True, squeeze=False)
    for ax, (title, keys) in zip(axes[:, 0], panels, strict=True):
        for key in keys:
            points = [(s["t"] / 60, s[key]) for s in report.samples if key in s]
            if points:
                ax.plot([p[0] for p in points], [p[1] for p in points], label=key, linewidth=1)
        ax.axvline(report.warmup_s / 60, color="grey", linestyle="--", linewidth=0.8)
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7, loc="upper left")
    axes[-1, 0].set_xlabel("minutes (dashed: end of warm-up)")
    fig.suptitle(f"{report.kind} soak, {report.minutes:g} min: {'bounds held' if report.ok else 'BOUND BROKEN'}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


class Every:
    """A recurring action at random intervals around `mean` seconds (so actions do not fall in step)."""

    def __init__(self, mean: float, rng: random.Random) -> None:
        self.mean = mean
        self.rng = rng
        self.due = time.monotonic() + rng.uniform(0, mean)

    def ready(self) -> bool:
        now = time.monotonic()
        if now < self.due:
            return False
        self.due = now + self.rng.uniform(0.5, 1.5) * self.mean
        return True
