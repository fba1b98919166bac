"""The controllers of fleet mode as a list: reading it, the order to try it in, and the memory of
the one that answered last.

Several controllers serve one fleet and any of them answers reads, so an operator lists them all
and fleetctl asks them in turn. The one that answered last time is asked first next time: after a
controller dies, only the first command pays for finding another one. That memory is a small JSON
file in the user's state directory (`$XDG_STATE_HOME/fleetvisor`, else ~/.local/state/fleetvisor),
one entry per list, since an operator may drive several fleets. It is a hint: a file that cannot
be read or written changes the order of attempts, never the outcome of a command.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

STATE_FILE = "fleetctl-controllers.json"
MAX_REMEMBERED = 32  # lists (fleets) remembered; the least recently used one is dropped
MAX_STATE_BYTES = 64 * 1024  # a file grown past this is someone else's, not ours: ignored


class AddressError(ValueError):
    """A controller list that cannot be right: the message names where it came from."""


def parse_address(text: str) -> str:
    """`HOST:PORT` or `[IPv6]:PORT`, as given (without surrounding blanks); else AddressError."""
    address = text.strip()
    host, colon, port = address.rpartition(":")
    if not colon or not host or "/" in host or any(c.isspace() for c in host):
        raise AddressError(f"{address!r} is not HOST:PORT")
    if not port.isdigit() or not 1 <= int(port) <= 0xFFFF:
        raise AddressError(f"{address!r}: the port must be a number from 1 to 65535")
    if host.startswith("["):
        if not host.endswith("]") or len(host) == 2:
            raise AddressError(f"{address!r}: an IPv6 address goes in brackets, as [::1]:7500")
    elif ":" in host:
        raise AddressError(f"{address!r}: write an IPv6 address in brackets, as [{host}]:{port}")
    return address


def parse_list(value: object, source: str) -> tuple[str, ...]:
    """The addresses of a comma-separated string (flag, environment, file) or of a list of
    strings (the TOML file), in order, a repeated one kept once. `source` names where the value
    came from, for the error: "--controller", "FLEETCTL_CONTROLLER", "controller in FILE".

    A value with nothing in it at all ("", []) is no controller, as it always was (`--controller ""`
    leaves fleet mode to the node of the environment or file); an empty element among others is
    a mistake.
    """
    if isinstance(value, str):
        items = value.split(",") if value.strip() else []
    elif isinstance(value, list) and all(isinstance(item, str) for item in value):
        items = list(value)
    else:
        raise AddressError(f"{source} must be a string such as \"10.0.0.1:7500,10.0.0.2:7500\" "
                           "or a list of such addresses")
    addresses: list[str] = []
    for number, item in enumerate(items, 1):
        if not item.strip():
            where = f"element {number} of {value!r}" if len(items) > 1 else "the value"
            raise AddressError(f"{source}: {where} is empty (expected HOST:PORT[,HOST:PORT...])")
        try:
            address = parse_address(item)
        except AddressError as exc:
            raise AddressError(f"{source}: {exc}") from None
        if address not in addresses:
            addresses.append(address)
    return tuple(addresses)


def ordered(addresses: Sequence[str], first: str | None) -> tuple[str, ...]:
    """The order to try `addresses` in: `first` (the one that answered last) ahead of the others,
    which keep the operator's order; a `first` that is not in the list is ignored."""
    if first is None or first not in addresses:
        return tuple(addresses)
    return (first, *(a for a in addresses if a != first))


def state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "fleetvisor"


def list_key(addresses: Sequence[str]) -> str:
    """One fleet, whatever order its controllers are listed in."""
    return ",".join(sorted(addresses))


class Memory:
    """Which controller of a list answered last, kept across runs of fleetctl.

    Nothing is kept for a single address (there is nothing to choose), so one controller works
    exactly as it always did and writes no file.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path if path is not None else state_dir() / STATE_FILE

    def _load(self) -> dict[str, str]:
        try:
            with open(self.path, "rb") as f:
                raw = f.read(MAX_STATE_BYTES + 1)
            data = json.loads(raw) if len(raw) <= MAX_STATE_BYTES else None
        except (OSError, ValueError):
            return {}
        entries = data.get("answered") if isinstance(data, dict) else None
        if not isinstance(entries, dict):
            return {}
        return {k: v for k, v in entries.items() if isinstance(k, str) and isinstance(v, str)}

    def recall(self, addresses: Sequence[str]) -> str | None:
        if len(addresses) < 2:
            return None
        answered = self._load().get(list_key(addresses))
        return answered if answered in addresses else None

    def remember(self, addresses: Sequence[str], address: str) -> None:
        """Keep `address` as the one of `addresses` to try first; never raises."""
        if len(addresses) < 2 or address not in addresses:
            return
        try:
            entries = self._load()
            key = list_key(addresses)
            if entries.get(key) == address and list(entries)[-1] == key:
                return
            entries.pop(key, None)
            entries[key] = address  # the most recently used last; the oldest go first
            while len(entries) > MAX_REMEMBERED:
                entries.pop(next(iter(entries)))
            self._write(json.dumps({"answered": entries}, indent=1, sort_keys=False) + "\n")
        except Exception:  # a hint that cannot be kept must not fail the command that answered
            return

    def _write(self, text: str) -> None:
        """Atomically, so that two fleetctl running at once leave one whole file or the other."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=".fleetctl-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
            os.replace(temp, self.path)
        except BaseException:
            os.unlink(temp)
            raise
