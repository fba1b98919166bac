"""An event listener that says what a script tells it to, byte for byte.

SCRIPT is a JSON list of steps: {"write": "<hex>"} writes those bytes to stdout in one write; {"event": true}
waits (at most 10 s) for one event on stdin and reads it whole. When the script is done it writes DONE to the
file DONE_PATH, or "no event" if an event it waited for never came; then it waits to be stopped.
"""

import json
import os
import select
import sys
import time


def read_event(deadline: float) -> bool:
    """One event: a header line whose len: field says how many payload bytes follow."""
    data = b""
    while b"\n" not in data:
        if not select.select([0], [], [], max(0.0, deadline - time.monotonic()))[0]:
            return False
        chunk = os.read(0, 1)
        if not chunk:
            return False
        data += chunk
    headers = dict(field.split(":", 1) for field in data.decode().split())
    remaining = int(headers["len"])
    while remaining:
        chunk = os.read(0, remaining)
        if not chunk:
            return False
        remaining -= len(chunk)
    return True


def main() -> None:
    script_path, done_path = sys.argv[1], sys.argv[2]
    with open(script_path) as f:
        steps = json.load(f)
    outcome = "DONE"
    for step in steps:
        if "write" in step:
            os.write(1, bytes.fromhex(step["write"]))
        elif not read_event(time.monotonic() + 10):
            outcome = "no event"
            break
    with open(done_path + ".tmp", "w") as f:
        f.write(outcome)
    os.rename(done_path + ".tmp", done_path)
    while True:
        time.sleep(1000)


if __name__ == "__main__":
    main()
