"""A minimal, fast event listener: acknowledges every event and keeps a count in a file.

It speaks the READY/RESULT protocol directly, so the measurement is the daemon's delivery cost.
`serve` is the protocol alone, for other listeners of the benchmarks (state_listener.py).
"""

import os
import sys
import time
from collections.abc import Callable


def serve(on_event: Callable[[bytes, bytes], None]) -> None:
    """Hand every event (header line, payload) to `on_event`, then acknowledge it; return at EOF."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        stdout.write(b"READY\n")
        stdout.flush()
        header = stdin.readline()
        if not header:
            return
        length = int(header.rsplit(b"len:", 1)[1])
        on_event(header, stdin.read(length))
        stdout.write(b"RESULT 2\nOK")


def main(count_path: str) -> None:
    count, written_at = 0, 0.0

    def counted(header: bytes, payload: bytes) -> None:
        nonlocal count, written_at
        count += 1
        now = time.monotonic()
        if now - written_at > 0.1:
            tmp = count_path + ".tmp"
            with open(tmp, "w") as f:
                f.write(str(count))
            os.replace(tmp, count_path)
            written_at = now
    serve(counted)


if __name__ == "__main__":
    main(sys.argv[1])
