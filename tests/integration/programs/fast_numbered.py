"""Writes numbered lines on stdout as fast as it can: "1\n2\n3\n..." from 0, in writes of
100 lines, so a gap or a repeat anywhere in its log shows bytes lost or duplicated."""

import itertools
import os

for batch in itertools.count():
    start = batch * 100
    os.write(1, "".join(f"{n}\n" for n in range(start, start + 100)).encode())
