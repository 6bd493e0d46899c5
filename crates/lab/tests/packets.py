#!/usr/bin/env python3
"""Hand-made packets for the lab's attack tests (tests/attacks.rs).

Run inside a network namespace: ``ip netns exec NS python3 packets.py SUBCOMMAND ...``.
Python 3 standard library only (raw sockets, so root in that namespace).

Subcommands:

  udp-send SRC DST PORT PAYLOAD
      Sends PAYLOAD as one UDP datagram from SRC (bound; the address must be local) to
      DST:PORT, 5 times 100 ms apart.
  udp-sink PORT FILE SECONDS
      Listens on 0.0.0.0:PORT for SECONDS; appends "PAYLOAD SRCIP:SRCPORT" per datagram to
      FILE (created, empty, once the socket is bound: a sign it is ready).
  syn SRC DST PORT [SPORT]
      Sends one TCP SYN SRC:SPORT -> DST:PORT, IP header and all (SRC may be spoofed), and
      waits up to 2 s for the SYN-ACK. Exit 0 if it came, 1 if not.
  synack-watch SRC DST PORT SPORT SECONDS
      Prints "ready" once listening, then waits up to SECONDS for a SYN-ACK DST:PORT ->
      SRC:SPORT arriving in this namespace. Exit 0 if one came, 1 if not. (What a spoofed SYN
      provokes goes to the real owner of the address: watch there.)
  ra IFACE
      Sends an IPv6 Router Advertisement (default router, lifetime 1800 s; prefix
      2001:db8:bad::/64 on-link and autonomous) to ff02::1 out of IFACE from its link-local
      address, 3 times 300 ms apart.
  udp-flood DST COUNT
      Sends COUNT one-byte UDP datagrams to DST as fast as it can, each to another port
      (1024 upwards, wrapping), all from one source port: every one a new flow. Prints how
      many were sent.
  icmp-echo SRC DST CODE
      Sends an ICMP echo request (type 8) with code CODE from SRC to DST and waits up to 2 s
      for the echo reply from DST. Exit 0 if it came, 1 if not.

Exit 2 on a usage or setup error.
"""

import os
import random
import select
import socket
import struct
import sys
import time


def die(msg):
    print(f"packets.py: {msg}", file=sys.stderr)
    sys.exit(2)


def checksum(data):
    """The Internet checksum (RFC 1071) of bytes."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def port_arg(s):
    p = int(s)
    if not 0 < p < 65536:
        die(f"bad port {s}")
    return p


# --- UDP ---------------------------------------------------------------------


def udp_send(src, dst, port, payload):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((src, 0))
    sent = 0
    for i in range(5):
        if i:
            time.sleep(0.1)
        try:
            s.sendto(payload.encode(), (dst, port_arg(port)))
            sent += 1
        except OSError as e:
            # Locally refused (no route, an ICMP error queued...): an attack may well be.
            print(f"packets.py: udp-send: {e}", file=sys.stderr)
    s.close()
    return 0 if sent else 1


def udp_flood(dst, count):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sent = 0
    for i in range(int(count)):
        try:
            s.sendto(b"x", (dst, 1024 + i % 60000))
            sent += 1
        except OSError:
            # An ICMP error from an earlier datagram surfaces here; keep flooding.
            pass
    s.close()
    print(sent)
    return 0 if sent else 1


def udp_sink(port, path, seconds):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port_arg(port)))
    deadline = time.monotonic() + float(seconds)
    with open(path, "a", encoding="utf-8") as f:
        f.flush()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return 0
            r, _, _ = select.select([s], [], [], left)
            if not r:
                continue
            data, (addr, sport) = s.recvfrom(65535)
            text = data.decode("utf-8", "replace").replace("\n", " ").strip()
            f.write(f"{text} {addr}:{sport}\n")
            f.flush()


# --- TCP SYN -----------------------------------------------------------------

SYN = 0x02
ACK = 0x10


def ipv4_header(src, dst, proto, payload_len):
    ver_ihl = 0x45
    total = 20 + payload_len
    ident = random.randrange(1, 0x10000)
    hdr = struct.pack(
        "!BBHHHBBH4s4s",
        ver_ihl,
        0,
        total,
        ident,
        0x4000,  # DF
        64,
        proto,
        0,
        socket.inet_aton(src),
        socket.inet_aton(dst),
    )
    return hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:]


def tcp_syn(src, dst, sport, dport, seq):
    # Data offset 6 words: the header and one MSS option, as a real stack sends.
    options = struct.pack("!BBH", 2, 4, 1460)
    offset_flags = (6 << 12) | SYN

    def header(csum):
        return (
            struct.pack(
                "!HHIIHHHH", sport, dport, seq, 0, offset_flags, 64240, csum, 0
            )
            + options
        )

    seg = header(0)
    pseudo = struct.pack(
        "!4s4sBBH",
        socket.inet_aton(src),
        socket.inet_aton(dst),
        0,
        socket.IPPROTO_TCP,
        len(seg),
    )
    return header(checksum(pseudo + seg))


def parse_tcp(pkt):
    """(src, dst, sport, dport, seq, ack, flags) of an IPv4 TCP packet, or None."""
    if len(pkt) < 20 or pkt[0] >> 4 != 4 or pkt[9] != socket.IPPROTO_TCP:
        return None
    ihl = (pkt[0] & 0x0F) * 4
    if len(pkt) < ihl + 20:
        return None
    src = socket.inet_ntoa(pkt[12:16])
    dst = socket.inet_ntoa(pkt[16:20])
    sport, dport, seq, ack, offset_flags = struct.unpack(
        "!HHIIH", pkt[ihl : ihl + 14]
    )
    return src, dst, sport, dport, seq, ack, offset_flags & 0x3F


def wait_synack(rx, src, dst, port, sport, seconds, seq=None):
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        r, _, _ = select.select([rx], [], [], left)
        if not r:
            continue
        t = parse_tcp(rx.recv(65535))
        if t is None:
            continue
        psrc, pdst, psport, pdport, _, pack, flags = t
        if (
            psrc == dst
            and pdst == src
            and psport == port
            and pdport == sport
            and flags & (SYN | ACK) == (SYN | ACK)
            and (seq is None or pack == (seq + 1) & 0xFFFFFFFF)
        ):
            return True


def tcp_receiver():
    # A raw TCP socket gets a copy of every TCP packet delivered to this namespace.
    return socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)


def syn(src, dst, port, sport=None):
    port = port_arg(port)
    sport = port_arg(sport) if sport else random.randrange(20000, 32000)
    rx = tcp_receiver()
    tx = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    tx.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    seq = random.randrange(0, 1 << 32)
    seg = tcp_syn(src, dst, sport, port, seq)
    pkt = ipv4_header(src, dst, socket.IPPROTO_TCP, len(seg)) + seg
    try:
        tx.sendto(pkt, (dst, 0))
    except OSError as e:
        print(f"packets.py: syn: {e}", file=sys.stderr)
        return 1
    return 0 if wait_synack(rx, src, dst, port, sport, 2.0, seq) else 1


def synack_watch(src, dst, port, sport, seconds):
    rx = tcp_receiver()
    print("ready", flush=True)
    ok = wait_synack(rx, src, dst, port_arg(port), port_arg(sport), float(seconds))
    return 0 if ok else 1


# --- ICMP echo ---------------------------------------------------------------


def icmp_echo(src, dst, code):
    code = int(code)
    if not 0 <= code <= 255:
        die(f"bad ICMP code {code}")
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    s.bind((src, 0))
    ident = os.getpid() & 0xFFFF
    seq = random.randrange(1, 0x10000)
    payload = b"calico-lab attack test" + os.urandom(8)
    hdr = struct.pack("!BBHHH", 8, code, 0, ident, seq)
    msg = struct.pack("!BBHHH", 8, code, checksum(hdr + payload), ident, seq) + payload
    try:
        s.sendto(msg, (dst, 0))
    except OSError as e:
        print(f"packets.py: icmp-echo: {e}", file=sys.stderr)
        return 1
    deadline = time.monotonic() + 2.0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return 1
        r, _, _ = select.select([s], [], [], left)
        if not r:
            continue
        pkt = s.recv(65535)
        ihl = (pkt[0] & 0x0F) * 4
        if len(pkt) < ihl + 8 or socket.inet_ntoa(pkt[12:16]) != dst:
            continue
        rtype, _, _, rid, rseq = struct.unpack("!BBHHH", pkt[ihl : ihl + 8])
        if rtype == 0 and rid == ident and rseq == seq:
            return 0


# --- IPv6 Router Advertisement ------------------------------------------------

IFA_F_DADFAILED = 0x08
IFA_F_TENTATIVE = 0x40


def link_local(iface, within):
    """The non-tentative link-local address of iface, waiting up to `within` s."""
    deadline = time.monotonic() + within
    while True:
        try:
            with open("/proc/net/if_inet6", encoding="ascii") as f:
                for line in f:
                    hexaddr, _, _, scope, flags, name = line.split()
                    if (
                        name == iface
                        and int(scope, 16) == 0x20
                        and not int(flags, 16) & (IFA_F_TENTATIVE | IFA_F_DADFAILED)
                    ):
                        return socket.inet_ntop(
                            socket.AF_INET6, bytes.fromhex(hexaddr)
                        )
        except FileNotFoundError:
            die("no IPv6 in this namespace (/proc/net/if_inet6 missing)")
        if time.monotonic() > deadline:
            die(f"{iface} has no usable link-local address")
        time.sleep(0.1)


def router_advertisement(mac):
    # Type 134, code 0, checksum (the kernel fills it on raw ICMPv6 sockets), current hop
    # limit 64, flags 0, router lifetime 1800 s, reachable time 0, retrans timer 0.
    ra = struct.pack("!BBHBBHII", 134, 0, 0, 64, 0, 1800, 0, 0)
    # Prefix Information: type 3, length 4 (x 8 octets), /64, L and A flags, valid and
    # preferred lifetimes 86400 s, reserved, the prefix.
    ra += struct.pack(
        "!BBBBIII16s",
        3,
        4,
        64,
        0xC0,
        86400,
        86400,
        0,
        socket.inet_pton(socket.AF_INET6, "2001:db8:bad::"),
    )
    if mac:
        # Source link-layer address: type 1, length 1.
        ra += struct.pack("!BB6s", 1, 1, mac)
    return ra


def iface_mac(iface):
    try:
        with open(f"/sys/class/net/{iface}/address", encoding="ascii") as f:
            mac = bytes.fromhex(f.read().strip().replace(":", ""))
        return mac if len(mac) == 6 else None
    except OSError:
        return None


def ra(iface):
    try:
        index = socket.if_nametoindex(iface)
    except OSError:
        die(f"no interface {iface}")
    src = link_local(iface, 3.0)
    s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
    s.bind((src, 0, 0, index))
    pkt = router_advertisement(iface_mac(iface))
    for i in range(3):
        if i:
            time.sleep(0.3)
        s.sendto(pkt, ("ff02::1", 0, 0, index))
    return 0


# -----------------------------------------------------------------------------

COMMANDS = {
    "udp-send": (udp_send, 4, 4),
    "udp-sink": (udp_sink, 3, 3),
    "udp-flood": (udp_flood, 2, 2),
    "syn": (syn, 3, 4),
    "synack-watch": (synack_watch, 5, 5),
    "ra": (ra, 1, 1),
    "icmp-echo": (icmp_echo, 3, 3),
}


def main(argv):
    if len(argv) < 2 or argv[1] not in COMMANDS:
        die(f"usage: packets.py {{{','.join(COMMANDS)}}} ARGS... (see the docstring)")
    fn, lo, hi = COMMANDS[argv[1]]
    args = argv[2:]
    if not lo <= len(args) <= hi:
        die(f"{argv[1]}: expected {lo}..{hi} arguments, got {len(args)}")
    return fn(*args)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
