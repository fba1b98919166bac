"""What a request's name patterns select, as the controller reads them.

The grammar itself lives in namespec.py, shared with fleetctl so the two never read a pattern
differently; a refusal is a `SelectionError` here, the name the controller's callers catch.
"""

from __future__ import annotations

from .namespec import GLOB_CHARS, Pattern, parse, parse_all
from .namespec import PatternError as SelectionError

__all__ = ["GLOB_CHARS", "Pattern", "SelectionError", "parse", "parse_all"]
