"""A test event listener built on the stock supervisor.childutils helper.

Appends one JSON line per event it is sent to OUT: {"pid", "headers", "payload"}. Options
make it misbehave in the ways the tests need:

  --fail-once        answer FAIL the first time it sees an event serial, OK the second time
  --die-once MARKER  exit without answering the first event (once: MARKER file remembers)
  --garbage          write garbage instead of READY
  --bad-result       answer the first event with a malformed RESULT line
  --gate PATH        wait until PATH exists before saying READY the first time
  --linger           on SIGTERM keep listening for one more second, so events sent while
                     the daemon shuts down are recorded
"""

import argparse
import json
import os
import signal
import sys
import time

from supervisor import childutils


def record(out, headers, payload):
    with open(out, "a") as f:
        f.write(json.dumps({"pid": os.getpid(), "time": time.time(), "headers": headers,
                            "payload": payload}) + "\n")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--fail-once", action="store_true")
    parser.add_argument("--die-once")
    parser.add_argument("--garbage", action="store_true")
    parser.add_argument("--bad-result", action="store_true")
    parser.add_argument("--gate")
    parser.add_argument("--linger", action="store_true")
    args = parser.parse_args()
    if args.linger:
        signal.signal(signal.SIGTERM, lambda *_: signal.alarm(1))

    if args.garbage:
        sys.stdout.write("HELLO\n")
        sys.stdout.flush()
        time.sleep(1000)
    if args.gate:
        deadline = time.monotonic() + 60
        while not os.path.exists(args.gate) and time.monotonic() < deadline:
            time.sleep(0.02)
    failed = set()
    while True:
        headers, payload = childutils.listener.wait(sys.stdin, sys.stdout)
        record(args.out, headers, payload)
        if args.die_once and not os.path.exists(args.die_once):
            open(args.die_once, "w").close()
            os._exit(7)
        if args.bad_result:
            sys.stdout.write("RESULT two\nOK")
            sys.stdout.flush()
            time.sleep(1000)
        if args.fail_once and headers["serial"] not in failed:
            failed.add(headers["serial"])
            childutils.listener.fail(sys.stdout)
            continue
        childutils.listener.ok(sys.stdout)


if __name__ == "__main__":
    main()
