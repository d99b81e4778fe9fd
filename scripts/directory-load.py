#!/usr/bin/env python3
"""directory-load.py — how many files and members a tracker holds, at what cost, on loopback.

Usage: scripts/directory-load.py [--bin DIR] [--files N] [--publishers P] [--members M]
                                 [--chunks C]

Starts `DIR/file-owner 0 --tracker --bind 127.0.0.1`, then:

  1. P publisher connections (default 20) publish N files in all (default 10,000), each a
     synthetic manifest of C chunks (default 40; the chunk hashes are random: the tracker
     checks a manifest's shape, not its content, and never serves chunks);
  2. M getter connections (default 1,000) each say `hello` for one of the files, with a port
     (so each is a directory member), read `welcome`, and stay;
  3. `peer list --json` is run 5 times and timed; `peer locate` of one file likewise.

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
    a = ap.parse_args()
    owner = subprocess.Popen(
        [os.path.join(a.bin, "file-owner"), "0", "--tracker", "--bind", "127.0.0.1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    socks, stop = [], threading.Event()
    try:
        line = owner.stdout.readline()
        port = int(re.search(r"127\.0\.0\.1:(\d+)", line).group(1))
        print(f"tracker on port {port}, VmRSS {rss_kib(owner.pid)} KiB")
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
