"""Bounds on what a config push or a heartbeat carries, shared by fleetctl (which stops reading there) and
the controller (which refuses more before any work is done for it)."""

from __future__ import annotations

from collections.abc import Sequence

# A revision is stored in etcd as one value; etcd refuses requests over 1.5 MiB by default.
MAX_CONFIG_BYTES = 1024 * 1024
# A config name is a key segment in etcd and a file name on every agent (NAME.conf).
MAX_CONFIG_NAME_CHARS = 128


def config_name_refusal(name: str) -> str | None:
    if len(name) > MAX_CONFIG_NAME_CHARS:
        return f"a config name is limited to {MAX_CONFIG_NAME_CHARS} characters (got {len(name)})"
    return None


def config_size_refusal(text: str) -> str | None:
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_CONFIG_BYTES:
        return f"a config is limited to {MAX_CONFIG_BYTES} bytes (got {size})"
    return None


# A heartbeat's list of the node's own program-level sections: as many as a config may define.
MAX_LOCAL_SECTIONS = 10000
MAX_SECTION_CHARS = 2 * MAX_CONFIG_NAME_CHARS


def sections_refusal(sections: Sequence[str]) -> str | None:
    if len(sections) > MAX_LOCAL_SECTIONS:
        return f"a heartbeat may list at most {MAX_LOCAL_SECTIONS} local sections (got {len(sections)})"
    if any(len(s) > MAX_SECTION_CHARS for s in sections):
        return f"a local section name is limited to {MAX_SECTION_CHARS} characters"
    return None


# A status reply (fleetctl's GetStatus and WatchStatus) or a message between controllers (a batch
# of live node states): gRPC's default limit of 4 MiB is a 1000-node fleet's status. The bound is
# set on the receiving channels; raising it means more memory per reply in fleetctl and controllers.
MAX_STATUS_MESSAGE_BYTES = 64 * 1024 * 1024
