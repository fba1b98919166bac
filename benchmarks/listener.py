"""A minimal, fast event listener: acknowledges every event and keeps a count in a file.

It speaks the READY/RESULT protocol directly, so the measurement is the daemon's delivery cost.
"""

import os
import sys
import time


def main(count_path: str) -> None:
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    count, written_at = 0, 0.0
    while True:
        stdout.write(b"READY\n")
        stdout.flush()
        header = stdin.readline()
        if not header:
            return
        length = int(header.rsplit(b"len:", 1)[1])
        stdin.read(length)
        stdout.write(b"RESULT 2\nOK")
        count += 1
        now = time.monotonic()
        if now - written_at > 0.1:
            tmp = count_path + ".tmp"
            with open(tmp, "w") as f:
                f.write(str(count))
            os.replace(tmp, count_path)
            written_at = now


if __name__ == "__main__":
    main(sys.argv[1])
