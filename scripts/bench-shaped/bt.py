#!/usr/bin/env python3
"""The BitTorrent side of scripts/bench-shaped.sh: a torrent maker and a small HTTP tracker.

  bt.py torrent FILE OUT.torrent --announce URL [--piece-kib 256]
      writes a private single-file torrent (v1) of FILE, announcing to URL only.
  bt.py tracker --bind IP --port P --torrent T [--torrent T2 ...] [--interval SECS]
      serves /announce for the given torrents only (others get a failure reason), answers
      with every other peer of the torrent in compact form, prints "listening on IP:P" and
      then one line per announce ("announce IP:PORT left=BYTES event=EVENT").

Python 3 standard library only. The tracker is built for a benchmark on hosts made here: it
keeps at most 1,000 peers per torrent and reads nothing but the announce's query string.
"""
import argparse
import hashlib
import http.server
import ipaddress
import os
import struct
import sys
import time
import urllib.parse

MAX_PEERS = 1000


def bencode(v):
    if isinstance(v, int):
        return b"i%de" % v
    if isinstance(v, str):
        v = v.encode()
    if isinstance(v, bytes):
        return b"%d:%s" % (len(v), v)
    if isinstance(v, list):
        return b"l" + b"".join(bencode(x) for x in v) + b"e"
    if isinstance(v, dict):
        items = sorted((k.encode() if isinstance(k, str) else k, x) for k, x in v.items())
        return b"d" + b"".join(bencode(k) + bencode(x) for k, x in items) + b"e"
    raise TypeError(type(v))


def bdecode_info_hash(data):
    """SHA-1 of the raw bencoded "info" value of a torrent file."""

    def walk(i):
        c = data[i : i + 1]
        if c == b"i":
            return data.index(b"e", i) + 1
        if c in (b"l", b"d"):
            i += 1
            while data[i : i + 1] != b"e":
                i = walk(i)
            return i + 1
        n = data.index(b":", i)
        return n + 1 + int(data[i:n])

    if not data.startswith(b"d"):
        raise ValueError("not a bencoded dictionary")
    i = 1
    while data[i : i + 1] != b"e":
        key_end = walk(i)
        key = data[data.index(b":", i) + 1 : key_end]
        value_end = walk(key_end)
        if key == b"info":
            return hashlib.sha1(data[key_end:value_end]).digest()
        i = value_end
    raise ValueError("no info dictionary")


def make_torrent(args):
    piece = args.piece_kib * 1024
    pieces = bytearray()
    size = 0
    with open(args.file, "rb") as f:
        while True:
            block = f.read(piece)
            if not block:
                break
            size += len(block)
            pieces += hashlib.sha1(block).digest()
    meta = {
        "announce": args.announce,
        "created by": "ringswarm bench-shaped",
        "info": {
            "length": size,
            "name": os.path.basename(args.file),
            "piece length": piece,
            "pieces": bytes(pieces),
            "private": 1,
        },
    }
    with open(args.out, "wb") as f:
        f.write(bencode(meta))


class Tracker(http.server.BaseHTTPRequestHandler):
    swarms = {}  # info_hash -> {peer_id: (ip bytes, port, left, seen)}
    interval = 60
    protocol_version = "HTTP/1.0"

    def log_message(self, fmt, *a):  # quiet: one line per announce is noise here
        pass

    def reply(self, body):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path != "/announce" or len(url.query) > 4096:
            return self.reply(bencode({"failure reason": "only /announce"}))
        q = urllib.parse.parse_qs(url.query, encoding="latin-1")
        one = lambda k: q.get(k, [""])[0]
        ih = one("info_hash").encode("latin-1")
        swarm = self.swarms.get(ih)
        if swarm is None:
            return self.reply(bencode({"failure reason": "unknown torrent"}))
        pid = one("peer_id").encode("latin-1")[:20]
        try:
            port = int(one("port"))
            left = int(one("left") or 0)
            ip = ipaddress.IPv4Address(one("ip") or self.client_address[0])
        except ValueError:
            return self.reply(bencode({"failure reason": "bad port, left or ip"}))
        if not 0 < port < 65536:
            return self.reply(bencode({"failure reason": "bad port"}))
        print(f"announce {ip}:{port} left={left} event={one('event') or '-'}", flush=True)
        if one("event") == "stopped":
            swarm.pop(pid, None)
        elif pid in swarm or len(swarm) < MAX_PEERS:
            swarm[pid] = (ip.packed, port, left, time.time())
        peers = b"".join(a + struct.pack(">H", p) for k, (a, p, _, _) in swarm.items() if k != pid)
        seeders = sum(1 for (_, _, l, _) in swarm.values() if l == 0)
        self.reply(
            bencode(
                {
                    "interval": self.interval,
                    "min interval": self.interval,
                    "complete": seeders,
                    "incomplete": len(swarm) - seeders,
                    "peers": peers,
                }
            )
        )


def run_tracker(args):
    for t in args.torrent:
        with open(t, "rb") as f:
            Tracker.swarms[bdecode_info_hash(f.read())] = {}
    Tracker.interval = args.interval
    server = http.server.ThreadingHTTPServer((args.bind, args.port), Tracker)
    server.daemon_threads = True
    print(f"listening on {args.bind}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("torrent")
    t.add_argument("file")
    t.add_argument("out")
    t.add_argument("--announce", required=True)
    t.add_argument("--piece-kib", type=int, default=256)
    r = sub.add_parser("tracker")
    r.add_argument("--bind", required=True)
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--torrent", action="append", required=True)
    r.add_argument("--interval", type=int, default=60)
    args = ap.parse_args()
    if args.cmd == "torrent":
        make_torrent(args)
    else:
        run_tracker(args)


if __name__ == "__main__":
    sys.exit(main())
