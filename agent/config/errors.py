"""The one error type a bad config raises: it names where the problem is."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config that cannot be used. Nothing may be applied when one is raised."""

    def __init__(self, message: str, *, file: str | None = None, section: str | None = None,
                 option: str | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.section = section
        self.option = option
        self.line = line

    def __str__(self) -> str:
        where = []
        if self.section:
            where.append(f"in section {self.section!r}")
        if self.option:
            where.append(f"option {self.option!r}")
        text = self.message + (" " + ", ".join(where) if where else "")
        loc = []
        if self.file:
            loc.append(f"file: {self.file!r}")
        if self.line:
            loc.append(f"line: {self.line}")
        return text + (f" ({', '.join(loc)})" if loc else "")
