"""Where the config file is looked for when -c is not given: supervisord's list, in order.

The first two entries hang off the directory *above* the one holding the executable (so a
supervisord in /usr/local/bin finds /usr/local/etc/supervisord.conf); the next two are
relative to the current directory.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from .errors import ConfigError


def search_paths(argv0: str | None = None) -> list[str]:
    prefix = os.path.dirname(os.path.dirname(sys.argv[0] if argv0 is None else argv0))
    return [
        os.path.join(prefix, "etc", "supervisord.conf"),
        os.path.join(prefix, "supervisord.conf"),
        "supervisord.conf",
        "etc/supervisord.conf",
        "/etc/supervisord.conf",
        "/etc/supervisor/supervisord.conf",
    ]


def find_config_file(argv0: str | None = None, *,
                     exists: Callable[[str], bool] = os.path.exists) -> str:
    """The first existing entry of `search_paths`, or a ConfigError listing them all.

    Searching the current directory as root is risky (anyone who can write there chooses
    the config); supervisord warns about it and so should the caller, when uid is 0.
    """
    paths = search_paths(argv0)
    for path in paths:
        if exists(path):
            return path
    raise ConfigError(f"no config file found in the default locations ({', '.join(paths)}); "
                      f"name one with -c")
