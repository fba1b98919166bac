"""An fcgi-program stand-in: answers every connection on the listening socket it got as fd 0."""

import os
import socket

listener = socket.socket(fileno=0)
name = os.environ["SUPERVISOR_PROCESS_NAME"]
while True:
    conn, _ = listener.accept()
    with conn:
        conn.sendall(f"hello from {name}\n".encode())
