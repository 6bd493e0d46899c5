#!/usr/bin/env python3
"""For bench/docker.sh, run inside a new container's network namespace:
`first_packet.py HOST PORT T0_NS LIMIT_S` tries a TCP connection to HOST:PORT every
millisecond (2 ms connect timeout) and prints the milliseconds from T0_NS (a wall-clock
timestamp taken before `docker run` started) to the first connection that succeeds."""
import socket
import sys
import time


def main():
    host, port, t0, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    end = time.monotonic() + limit
    while time.monotonic() < end:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(0.002)
        try:
            s.connect((host, port))
            print(f"{(time.time_ns() - t0) / 1e6:.1f}")
            return 0
        except OSError:
            time.sleep(0.001)
        finally:
            s.close()
    print("none", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
