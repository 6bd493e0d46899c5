#!/usr/bin/env python3
"""A probe for bench/enforce.sh: `send HOST PORT SECONDS` sends one UDP datagram
carrying its send time (ns) every millisecond; `recv PORT FILE SECONDS` appends
"send_ns recv_ns" per datagram received. Both bounded in time."""
import socket
import sys
import time


def send(host, port, seconds):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    end = time.monotonic() + seconds
    nxt = time.monotonic()
    while time.monotonic() < end:
        try:
            s.sendto(str(time.time_ns()).encode(), (host, port))
        except OSError:
            pass  # dropped by policy on the way: keep probing
        nxt += 0.001
        delay = nxt - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def recv(port, path, seconds):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    s.settimeout(0.2)
    end = time.monotonic() + seconds
    with open(path, "a", buffering=1) as out:
        while time.monotonic() < end:
            try:
                data = s.recv(64)
            except socket.timeout:
                continue
            out.write(f"{data.decode()} {time.time_ns()}\n")


if __name__ == "__main__":
    if sys.argv[1] == "send":
        send(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
    else:
        recv(int(sys.argv[2]), sys.argv[3], float(sys.argv[4]))
