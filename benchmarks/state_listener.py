"""An event listener for the agent soak test: writes one line per PROCESS_STATE event it is sent,
`processname groupname from_state to_state`, in the order received, unbuffered (the soak compares
these lines with the main log's)."""

import sys

from listener import serve  # run as a script: its folder is on the path


def main(path: str) -> None:
    with open(path, "ab", buffering=0) as out:
        def write(header: bytes, payload: bytes) -> None:
            fields = dict(token.split(b":", 1) for token in header.split())
            facts = dict(token.split(b":", 1) for token in payload.split(b"\n", 1)[0].split())
            state = fields[b"eventname"].removeprefix(b"PROCESS_STATE_")
            out.write(b" ".join((facts[b"processname"], facts[b"groupname"], facts[b"from_state"], state)) + b"\n")
        serve(write)


if __name__ == "__main__":
    main(sys.argv[1])
