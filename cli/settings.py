"""Where fleetctl's connection settings come from: flags, then environment, then a config file.

The file is TOML, by default ~/.config/fleetvisor/fleetctl.toml (or $FLEETCTL_CONFIG):

    controller = ["10.0.0.1:7400", "10.0.0.2:7400"]  # fleet mode: the default for every command
    node = "10.0.0.5:7401"        # per-node mode when no controller is set (or with --node)
    tls_cert = "/etc/fleetvisor/admin.pem"
    tls_key = "/etc/fleetvisor/admin.key"
    tls_ca = "/etc/fleetvisor/ca.pem"
    timeout = 30
    summary_above = 100           # `fleetctl status` shows the summary above this many processes

`controller` is one address or several: a TOML list, or one string with commas as on the
command line (`--controller a:7500,b:7500`) and in FLEETCTL_CONTROLLER. fleetctl tries them in
order, the one that answered last time first (controllers.py).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .controllers import AddressError, parse_list

KEYS = ("node", "controller", "tls_cert", "tls_key", "tls_ca", "timeout", "summary_above")


class SettingsError(Exception):
    pass


@dataclass(frozen=True)
class Settings:
    node: str | None = None
    controllers: tuple[str, ...] = ()  # fleet mode: every controller of the fleet, in the order given
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None
    timeout: float = 30.0
    summary_above: int = 100  # `status` without names shows the fleet summary above this many processes

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert or self.tls_key or self.tls_ca)


def default_path() -> Path:
    if os.environ.get("FLEETCTL_CONFIG"):
        return Path(os.environ["FLEETCTL_CONFIG"])
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return Path(base) / "fleetvisor" / "fleetctl.toml"


def read_file(path: Path, required: bool) -> dict[str, object]:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        if required:
            raise SettingsError(f"config file {path} does not exist") from None
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"cannot read config file {path}: {exc}") from None
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise SettingsError(f"config file {path}: unknown setting(s) {', '.join(unknown)} "
                            f"(known: {', '.join(KEYS)})")
    return data


def resolve(flags: dict[str, object], config_path: str | None) -> Settings:
    """Each setting from its flag if given, else FLEETCTL_<NAME>, else the config file."""
    path = Path(config_path) if config_path else default_path()
    from_file = read_file(path, required=config_path is not None)
    values: dict[str, object] = {}
    sources: dict[str, str] = {}
    for key in KEYS:
        env = f"FLEETCTL_{key.upper()}"
        if flags.get(key) is not None:
            values[key], sources[key] = flags[key], f"--{key.replace('_', '-')}"
        elif os.environ.get(env):
            values[key], sources[key] = os.environ[env], env
        elif from_file.get(key) is not None:
            values[key], sources[key] = from_file[key], f"{key} in {path}"
    if "controller" in values:
        try:
            values["controllers"] = parse_list(values.pop("controller"), sources["controller"])
        except AddressError as exc:
            raise SettingsError(str(exc)) from None
    if "timeout" in values:
        try:
            values["timeout"] = float(values["timeout"])  # type: ignore[arg-type]
        except ValueError:
            raise SettingsError(f"timeout must be a number of seconds, not {values['timeout']!r}") from None
    if "summary_above" in values:
        values["summary_above"] = _count(values["summary_above"], sources["summary_above"])
    settings = Settings(**values)  # type: ignore[arg-type]
    if settings.tls and not (settings.tls_cert and settings.tls_key and settings.tls_ca):
        raise SettingsError("TLS needs all three of --tls-cert, --tls-key and --tls-ca")
    return settings


def _count(value: object, source: str) -> int:
    """A whole number of at least 0 (TOML gives an int, the environment a string)."""
    try:
        number = int(value) if isinstance(value, (int, str)) and not isinstance(value, bool) else -1
    except ValueError:
        number = -1
    if number < 0:
        raise SettingsError(f"summary_above ({source}) must be a whole number of processes, not {value!r}")
    return number
