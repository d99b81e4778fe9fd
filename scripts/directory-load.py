#!/usr/bin/env python3
"""directory-load.py — how many files and members a tracker holds, at what cost, on loopback.

Usage: scripts/directory-load.py [--bin DIR] [--files N] [--publishers P] [--members M]
                                 [--chunks C] [--bursts K]

Starts `DIR/file-owner 0 --tracker --bind 127.0.0.1`, then:

  1. P publisher connections (default 20) publish N files in all (default 10,000), each a
     synthetic manifest of C chunks (default 40; the chunk hashes are random: the tracker
     checks a manifest's shape, not its content, and never serves chunks);
  2. M getter connections (default 1,000) each say `hello` for one of the files, with a port
     (so each is a directory member), read `welcome`, and stay;
  3. `peer list --json` is run 5 times and timed; `peer locate` of one file likewise.

With --bursts K it measures churn instead: K times, P publishers publish N new files in all
(new contents each time) and then disconnect, withdrawing them. After each burst it prints
the files the tracker still holds (`/health`), its VmRSS and the CPU seconds the burst cost it
(user + system, from /proc): what publishers left behind must be freed, and a burst must cost
the same whatever came before. `--files 1 --publishers 1 --chunks 1048576 --bursts 4` is the
big-manifest case (one 69 MB manifest each time).

It prints the tracker's VmRSS before and after each step, and the timings. Every connection
keeps sending keep-alives. Only 127.0.0.1 is addressed. DIR defaults to target/release
(build with `cargo build --release`). The tracker is stopped on exit.
"""

import argparse
import json
import os
import re
import secrets
import socket
import struct
import subprocess
import sys
import threading
import time

CHUNK = 102400


def frame(header, body=b""):
    head = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack(">II", 4 + len(head) + len(body), len(head)) + head + body


def read_exact(sock, n):
    data = bytearray()
    while len(data) < n:
        more = sock.recv(n - len(data))
        if not more:
            raise EOFError("closed")
        data += more
    return bytes(data)


def read_frame(sock):
    (length,) = struct.unpack(">I", read_exact(sock, 4))
    data = read_exact(sock, length)
    (head,) = struct.unpack(">I", data[:4])
    return json.loads(data[4 : 4 + head])


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def manifest(i, chunks):
    return {
        "name": f"file-{i:06}.bin",
        "size": chunks * CHUNK,
        "chunk_size": CHUNK,
        "hash": secrets.token_hex(32),
        "chunks": [secrets.token_hex(32) for _ in range(chunks)],
    }


def cpu_seconds(pid):
    """User + system CPU seconds of process `pid` so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def held_files(http_port):
    """The files the tracker holds, from its /health."""
    with socket.create_connection(("127.0.0.1", http_port)) as s:
        s.sendall(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        data = b""
        while more := s.recv(65536):
            data += more
    return json.loads(data.split(b"\r\n\r\n", 1)[1])["files"]


def publish_all(port, publishers, per, chunks, first):
    """`publishers` connections publish `per` new files each; returns the open sockets."""
    socks = []
    for p in range(publishers):
        s = socket.create_connection(("127.0.0.1", port))
        socks.append(s)
        s.sendall(frame({"type": "hello", "version": 1, "role": "publisher", "have": [], "port": 40000 + p}))
        for i in range(first + p * per, first + (p + 1) * per):
            body = json.dumps(manifest(i, chunks), separators=(",", ":")).encode()
            s.sendall(frame({"type": "publish", "len": len(body)}, body))
            answer = read_frame(s)
            assert answer["type"] == "published", answer
    return socks


def bursts(a, owner, port, http_port):
    per = max(1, a.files // a.publishers)
    for k in range(a.bursts):
        cpu0, t0 = cpu_seconds(owner.pid), time.time()
        socks = publish_all(port, a.publishers, per, a.chunks, k * per * a.publishers)
        live = held_files(http_port)
        for s in socks:
            s.close()
        # Wait until the tracker saw every publisher go (what it holds stops shrinking).
        left, last = held_files(http_port), None
        while left != last:
            time.sleep(0.5)
            last, left = left, held_files(http_port)
        cpu = cpu_seconds(owner.pid) - cpu0
        print(f"burst {k + 1}: {per * a.publishers} files published ({live} held), then withdrawn: "
              f"{left} held after; {time.time() - t0:.2f}s, tracker CPU {cpu:.2f}s, VmRSS {rss_kib(owner.pid)} KiB")


def keep_alive(socks, stop):
    """Every few seconds, a keep-alive on every connection (the TTL is 45 s)."""
    while not stop.wait(5):
        for s in socks:
            try:
                s.sendall(frame({"type": "have", "chunks": []}))
            except OSError:
                pass


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="target/release")
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--publishers", type=int, default=20)
    ap.add_argument("--members", type=int, default=1_000)
    ap.add_argument("--chunks", type=int, default=40)
    ap.add_argument("--bursts", type=int, default=0)
    a = ap.parse_args()
    owner = subprocess.Popen(
        [os.path.join(a.bin, "file-owner"), "0", "--tracker", "--bind", "127.0.0.1", "--http", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    socks, stop = [], threading.Event()
    try:
        port = http_port = None
        while port is None or http_port is None:
            line = owner.stdout.readline()
            if not line:
                raise SystemExit("the tracker exited before saying where it listens")
            found = re.search(r"127\.0\.0\.1:(\d+)", line)
            if found and "http://" in line:
                http_port = int(found.group(1))
            elif found:
                port = int(found.group(1))
        print(f"tracker on port {port}, VmRSS {rss_kib(owner.pid)} KiB")
        if a.bursts:
            return bursts(a, owner, port, http_port)
        threading.Thread(target=keep_alive, args=(socks, stop), daemon=True).start()

        names = []
        t0 = time.time()
        per = a.files // a.publishers
        for p in range(a.publishers):
            s = socket.create_connection(("127.0.0.1", port))
            socks.append(s)
            s.sendall(frame({"type": "hello", "version": 1, "role": "publisher", "have": [], "port": 40000 + p}))
            for i in range(p * per, (p + 1) * per):
                m = manifest(i, a.chunks)
                body = json.dumps(m, separators=(",", ":")).encode()
                s.sendall(frame({"type": "publish", "len": len(body)}, body))
                answer = read_frame(s)
                assert answer["type"] == "published", answer
                names.append(m["name"])
        took = time.time() - t0
        print(f"published {len(names)} files ({a.chunks} chunks each) over {a.publishers} connections in {took:.2f}s; VmRSS {rss_kib(owner.pid)} KiB")

        t0 = time.time()
        for g in range(a.members):
            s = socket.create_connection(("127.0.0.1", port))
            socks.append(s)
            name = names[g % len(names)]
            s.sendall(frame({"type": "hello", "version": 1, "role": "getter", "file": name, "have": [], "port": 50000 + g % 10000}))
            welcome = read_frame(s)
            assert welcome["type"] == "welcome" and welcome.get("empty"), welcome
        took = time.time() - t0
        print(f"{a.members} getters joined in {took:.2f}s; VmRSS {rss_kib(owner.pid)} KiB")

        peer = os.path.join(a.bin, "peer")
        for what, args in (("list", ["list", str(port), "--json"]), ("locate", ["locate", str(port), names[0], "--json"])):
            times = []
            for _ in range(5):
                t0 = time.time()
                out = subprocess.run([peer] + args, capture_output=True, text=True, check=True).stdout
                times.append(time.time() - t0)
            body = json.loads(out)
            shown = len(body.get("files", body.get("sources", [])))
            times.sort()
            print(f"peer {what}: median {times[2] * 1000:.0f} ms (min {times[0] * 1000:.0f}, max {times[-1] * 1000:.0f}), {len(out)} bytes, {shown} entries, more: {body.get('more', body.get('more_sources'))}")
        print(f"tracker VmRSS at the end: {rss_kib(owner.pid)} KiB")
    finally:
        stop.set()
        for s in socks:
            s.close()
        owner.terminate()
        owner.wait()


if __name__ == "__main__":
    sys.exit(main())
