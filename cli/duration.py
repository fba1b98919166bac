"""Spans of time as operators type and read them: `30s`, `10m`, `2h`, `1d`, and "12s ago".

Kept apart from the commands so the parsing rules (what `--since` accepts) are tested
without a controller and read the same everywhere they appear.
"""

from __future__ import annotations

import datetime
import re

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?[smhdw])+")


class DurationError(ValueError):
    """Text that is neither a duration nor a time; the message says what would be."""


def parse_duration(text: str) -> float:
    """Seconds in `30s`, `10m`, `2h`, `1d`, `1w` or a sum such as `1h30m`.

    A bare number is refused: "since 10" could mean seconds or minutes, and guessing wrong
    silently shows the wrong audit entries.
    """
    cleaned = text.strip().lower()
    if not _WHOLE.fullmatch(cleaned):
        raise DurationError(f"{text!r} is not a duration: use e.g. 30s, 10m, 2h, 1d or 1h30m")
    return sum(float(number) * UNITS[unit] for number, unit in _PART.findall(cleaned))


def parse_since(text: str, now: float) -> float:
    """The unix time `--since` means: a duration back from `now`, or an ISO date/time.

    An ISO time without a zone is local time, as people read their own clocks.
    """
    try:
        return now - parse_duration(text)
    except DurationError:
        pass
    try:
        moment = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise DurationError(f"{text!r} is neither a duration (30s, 10m, 2h, 1d) nor an ISO time "
                            "(2024-05-01 or 2024-05-01T12:00:00)") from None
    if moment.tzinfo is None:
        moment = moment.astimezone()  # local time
    return moment.timestamp()


def format_age(seconds: float) -> str:
    """A compact age: `4s`, `3m05s`, `2h10m`, `3d4h`; negative ages (clock skew) read as 0s."""
    total = max(0, int(seconds))
    if total < 60:
        return f"{total}s"
    if total < 3600:
        return f"{total // 60}m{total % 60:02d}s"
    if total < 86400:
        return f"{total // 3600}h{total % 3600 // 60:02d}m"
    return f"{total // 86400}d{total % 86400 // 3600}h"


def format_ago(when: float, now: float) -> str:
    """"3s ago", or "never" for a zero time (the proto's "not yet")."""
    return "never" if not when else f"{format_age(now - when)} ago"


def format_time(when: float) -> str:
    """Local wall-clock time to the second; "-" for the proto's zero."""
    if not when:
        return "-"
    return datetime.datetime.fromtimestamp(when).strftime("%Y-%m-%d %H:%M:%S")
