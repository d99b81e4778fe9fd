#!/usr/bin/env python3
"""hostile-load.py — what hostile clients cost a real `file-owner`, measured on loopback.

Usage: scripts/hostile-load.py [--bin DIR] [--size SIZE] [--chunk-size SIZE]
                               [--idle N] [--reps N]

Starts `DIR/file-owner 0 FILE --bind 127.0.0.1` on a sparse FILE of SIZE (default 4GiB, so
the manifest is that of a 4 GiB share: 41,944 chunks, a 2.8 MB `welcome`), then:

  idle   opens N connections (default 1000) that each say `hello` as a getter and read the
         whole `welcome`, and stay idle; prints the owner's VmRSS before and after.
  hello  for each of three 256-KiB-or-less chunk-id lists — the full range repeated to fill
  have   the header, the full range 8,192 times, and 8,192 disjoint ranges over the whole
         file — sends it REPS times (default 20) in a `hello` (and, on a fresh connection
         each time, in a `have` after the handshake) and prints the owner's CPU time (user +
         system, from /proc) per message, with the owner's answer.

Only 127.0.0.1 is addressed. DIR defaults to target/release (build with
`cargo build --release`). The file and the owner are removed on exit.
"""

import argparse
import json
import os
import re
import socket
import struct
import subprocess
import sys
import tempfile
import time


def size_arg(text):
    m = re.fullmatch(r"(\d+)\s*([KMGT]?)i?B?", text.strip(), re.I)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r}")
    return int(m.group(1)) * 1024 ** " KMGT".index((m.group(2) or " ").upper())


def frame(header):
    head = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack(">II", 4 + len(head), len(head)) + head


def read_exact(sock, n):
    data = b""
    while len(data) < n:
        more = sock.recv(n - len(data))
        if not more:
            raise EOFError("closed")
        data += more
    return data


def read_frame(sock):
    (length,) = struct.unpack(">I", read_exact(sock, 4))
    data = read_exact(sock, length)
    (head,) = struct.unpack(">I", data[:4])
    return json.loads(data[4 : 4 + head]), length


def status(pid, key):
    text = open(f"/proc/{pid}/status").read()
    return int(re.search(rf"{key}:\s+(\d+)", text).group(1))


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def hello(have=()):
    return frame({"type": "hello", "version": 1, "role": "getter", "have": list(have)})


def measure_idle(port, pid, n):
    before = status(pid, "VmRSS")
    conns = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(hello())
        head, length = read_frame(s)
        assert head["type"] == "welcome", head
        conns.append(s)
    time.sleep(1)
    after = status(pid, "VmRSS")
    print(f"idle: {n} connections, each read a welcome of {length} bytes: owner VmRSS "
          f"{before / 1024:.1f} MiB before, {after / 1024:.1f} MiB after "
          f"({(after - before) / n:.1f} KiB per connection)")
    for s in conns:
        s.close()


def measure_cpu(port, pid, chunks, kind, reps):
    full = [0, chunks - 1]
    per = len(json.dumps(full, separators=(",", ":"))) + 1
    step = max(2, chunks // 8192)
    lists = [
        ("the full range repeated to 256 KiB", [full] * ((256 * 1024 - 100) // per)),
        ("the full range 8,192 times", [full] * 8192),
        ("8,192 disjoint ranges", [[i * step, i * step + step - 2] for i in range(min(8192, chunks // step))]),
    ]
    for name, ranges in lists:
        msg = hello(ranges) if kind == "hello" else frame({"type": "have", "chunks": ranges})
        start = cpu_seconds(pid)
        answer = None
        for _ in range(reps):
            s = socket.create_connection(("127.0.0.1", port))
            try:
                if kind == "have":
                    s.sendall(hello())
                    read_frame(s)
                s.sendall(msg)
                if kind == "have":
                    s.sendall(frame({"type": "locate", "file": "1"}))
            except BrokenPipeError:
                pass
            while True:
                head, _ = read_frame(s)
                if head["type"] in ("welcome", "error", "locations"):
                    answer = head
                    break
            s.close()
        spent = (cpu_seconds(pid) - start) / reps
        what = answer["type"] + (": " + answer["message"][:70] if "message" in answer else "")
        print(f"{kind}: {name} ({len(msg)} bytes, {len(ranges)} ranges): "
              f"{spent * 1000:.1f} ms of owner CPU each; answer {what}")
    if kind == "have":
        print("  (each `have` connection first says hello and reads the welcome: that cost "
              "is in the figure)")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bin", default="target/release")
    p.add_argument("--size", type=size_arg, default=size_arg("4GiB"))
    p.add_argument("--chunk-size", default=None)
    p.add_argument("--idle", type=int, default=1000)
    p.add_argument("--reps", type=int, default=20)
    args = p.parse_args()
    owner_bin = os.path.join(args.bin, "file-owner")
    if not os.access(owner_bin, os.X_OK):
        sys.exit(f"error: {owner_bin} not found: run `cargo build --release` first")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "share.bin")
        with open(path, "wb") as f:
            f.truncate(args.size)
        cmd = [owner_bin, "0", path, "--bind", "127.0.0.1"]
        if args.chunk_size:
            cmd += ["--chunk-size", args.chunk_size]
        owner = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            line = owner.stdout.readline()
            print("owner:", line.strip())
            port = int(re.search(r":(\d+),", line).group(1))
            chunks = int(re.search(r"(\d+) chunks", line).group(1))
            if args.idle:
                measure_idle(port, owner.pid, args.idle)
            for kind in ("hello", "have"):
                measure_cpu(port, owner.pid, chunks, kind, args.reps)
        finally:
            owner.terminate()
            owner.wait()


if __name__ == "__main__":
    main()
