#!/usr/bin/env python3
"""http-lockout.py — can one client address lock others out of a real owner's HTTP side?

Usage: scripts/http-lockout.py [--bin DIR] [--streams N] [--wait SECONDS]

Starts `DIR/file-owner 0 FILE --bind 127.0.0.1 --http 0` on a small FILE, then:

  1. opens N (default 500) event-stream clients from 127.0.0.1 (`GET /api/events`), each
     reading its answer's status line and then staying idle, and counts the answers
     (200 streams, 429 or 503 refusals, closed);
  2. while they are all held open, a visitor from another loopback address (its socket bound
     to 127.0.0.2) asks `GET /health` on a fresh connection every 0.5 s until it gets a 200
     or SECONDS (default 70) have passed, and prints the first answer's status and time and
     how long it took to be served.

Only loopback is addressed (the whole 127.0.0.0/8 is loopback on Linux). DIR defaults to
target/release (build with `cargo build --release`); a debug build (`--bin target/debug`)
gives the same answers. The owner and the file are removed on exit.
"""

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time


def status_line(sock):
    """The status code of the answer on `sock`, or None if it closed first."""
    data = b""
    while b"\r\n" not in data:
        try:
            more = sock.recv(4096)
        except OSError:
            return None
        if not more:
            return None
        data += more
    return int(data.split(b" ", 2)[1])


def ask(port, path, source, timeout=5.0):
    """One request from `source` on a fresh connection: (status or None, seconds)."""
    start = time.monotonic()
    s = socket.socket()
    s.settimeout(timeout)
    try:
        s.bind((source, 0))
        s.connect(("127.0.0.1", port))
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        code = status_line(s)
    except OSError:
        code = None
    finally:
        s.close()
    return code, time.monotonic() - start


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bin", default="target/release")
    p.add_argument("--streams", type=int, default=500)
    p.add_argument("--wait", type=float, default=70.0)
    args = p.parse_args()
    owner_bin = os.path.join(args.bin, "file-owner")
    if not os.access(owner_bin, os.X_OK):
        sys.exit(f"error: {owner_bin} not found: run `cargo build --release` first")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "share.bin")
        with open(path, "wb") as f:
            f.write(os.urandom(600_000))
        cmd = [owner_bin, "0", path, "--bind", "127.0.0.1", "--http", "0"]
        owner = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        held = []
        try:
            port = None
            while port is None:
                line = owner.stdout.readline()
                if not line:
                    sys.exit("error: the owner exited before serving HTTP")
                m = re.search(r"dashboard on http://[^:]+:(\d+)/", line)
                port = m and int(m.group(1))
            code, took = ask(port, "/health", "127.0.0.2")
            print(f"before the flood: a visitor from 127.0.0.2 got {code} in {took * 1000:.1f} ms")
            answers = {}
            start = time.monotonic()
            for _ in range(args.streams):
                s = socket.socket()
                s.settimeout(5.0)
                s.bind(("127.0.0.1", 0))
                s.connect(("127.0.0.1", port))
                s.sendall(b"GET /api/events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
                code = status_line(s)
                answers[code or "closed"] = answers.get(code or "closed", 0) + 1
                held.append(s)
            flood = time.monotonic() - start
            summary = ", ".join(f"{n} {k}" for k, n in sorted(answers.items(), key=str))
            print(f"{args.streams} event-stream clients from 127.0.0.1 in {flood:.1f} s: {summary}")
            start = time.monotonic()
            first = None
            while True:
                code, took = ask(port, "/health", "127.0.0.2")
                if first is None:
                    first = (code, took)
                    print(f"a visitor from 127.0.0.2: first answer {code} in {took * 1000:.1f} ms")
                if code == 200:
                    print(f"a visitor from 127.0.0.2 was served (200) "
                          f"{time.monotonic() - start:.1f} s after the flood")
                    break
                if time.monotonic() - start > args.wait:
                    print(f"a visitor from 127.0.0.2 was not served within {args.wait:.0f} s "
                          f"(last answer {code})")
                    break
                time.sleep(0.5)
            code, took = ask(port, "/api/events", "127.0.0.2")
            print(f"an event stream from 127.0.0.2: {code} in {took * 1000:.1f} ms")
        finally:
            for s in held:
                s.close()
            owner.terminate()
            owner.wait()


if __name__ == "__main__":
    main()
