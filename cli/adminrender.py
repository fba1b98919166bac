"""How the admin commands' answers look (policies, revoked certificates): rich renderables
built from the controller's messages, nothing printed or called here. User data goes into
`Text`, never into markup."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text

from .duration import format_time
from .fleetrender import labels_text

if TYPE_CHECKING:
    from fleetvisor.v1 import controller_pb2 as cpb


def subjects_text(policy: cpb.Policy) -> str:
    parts = [f"{what} {','.join(names)}" for what, names in
             (("users", policy.users), ("groups", policy.groups), ("roles", policy.roles)) if names]
    return "; ".join(parts) or "-"


def scope_text(policy: cpb.Policy) -> str:
    """`role=web nodes web-* programs web:*`, leaving out what is everything; else `everywhere`."""
    parts = [labels_text(policy.labels) if policy.labels else ""]
    parts += [f"{what} {value}" for what, value in (("nodes", policy.nodes), ("programs", policy.programs))
              if value not in ("", "*")]
    return " ".join(p for p in parts if p) or "everywhere"


def policies_table(policies: Iterable[cpb.Policy]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("NAME", "VERBS", "SUBJECTS", "SCOPE", "RUN AS"):
        table.add_column(column, no_wrap=column in ("NAME", "VERBS"), overflow="fold")
    for p in policies:
        table.add_row(Text(p.name, style="bold"), Text(",".join(p.verbs)), Text(subjects_text(p)),
                      Text(scope_text(p)), Text(",".join(p.run_as) or "-"))
    return table


def policy_view(policy: cpb.Policy) -> Table:
    """One policy, a field per line."""
    table = Table(box=None, pad_edge=False, show_header=False)
    table.add_column(justify="right", style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    rows = (("name", policy.name), ("verbs", ",".join(policy.verbs)), ("users", ",".join(policy.users)),
            ("groups", ",".join(policy.groups)), ("roles", ",".join(policy.roles)),
            ("labels", labels_text(policy.labels)), ("nodes", policy.nodes or "*"),
            ("programs", policy.programs or "*"), ("run as", ",".join(policy.run_as)))
    for key, value in rows:
        table.add_row(key, Text(value or "-"))
    return table


def revocation_line(r: cpb.Revocation) -> Text:
    name = f" ({r.name})" if r.name else ""
    return Text(f"certificate {r.serial}{name} revoked by {r.who or '-'} at {format_time(r.time)}")


def revocations_table(revoked: Iterable[cpb.Revocation]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("SERIAL", "NAME", "REVOKED BY", "TIME"):
        table.add_column(column, no_wrap=True)
    for r in revoked:
        table.add_row(Text(r.serial), Text(r.name or "-"), Text(r.who or "-"), Text(format_time(r.time)))
    return table
