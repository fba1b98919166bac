"""Writes MEGABYTES megabytes of 'x' on stdout with no newline, optionally after a capture
BEGIN token (and no END token ever), then exits."""

import os
import sys

megabytes = int(sys.argv[1])
if "--begin-token" in sys.argv:
    os.write(1, b"<!--XSUPERVISOR:BEGIN-->")
chunk = b"x" * (1 << 20)
for _ in range(megabytes):
    view = memoryview(chunk)
    while view:
        view = view[os.write(1, view):]
