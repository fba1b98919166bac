"""fleetvisor's fleetctl.

gRPC's C core writes its own log lines to stderr (an "I1130 ... Handshake failed ..." above
fleetctl's one-line error when a TLS handshake is refused, "E... Invalid cert chain file" for
a bad PEM). fleetctl reports every failure itself, in one line, so the core is kept quiet.
Its verbosity is read once, when grpc is first imported, and both entry points (`fleetctl`
and `python -m fleetvisor.cli.main`) import this package first; the variable is put back
afterwards so nothing started later inherits it. GRPC_VERBOSITY set by the user still wins.
"""

import os as _os


def _import_grpc_quietly() -> None:
    if "GRPC_VERBOSITY" in _os.environ:
        return
    _os.environ["GRPC_VERBOSITY"] = "NONE"
    try:
        import grpc  # noqa: F401  (imported for its side effect: the core reads the variable now)
    finally:
        del _os.environ["GRPC_VERBOSITY"]


_import_grpc_quietly()
