"""Writes numbered lines on stdout for ever, 20 every 10 ms: the numbers show that it kept
running (a child whose output is not drained blocks) and where output was dropped."""

import itertools
import sys
import time

for batch in itertools.count():
    sys.stdout.write("".join(f"line {batch * 20 + i:09d} {'x' * 40}\n" for i in range(20)))
    sys.stdout.flush()
    time.sleep(0.01)
