#!/usr/bin/env python3
"""Where a ringswarm run of bench-shaped.sh spent its time, from its event files.

  timeline.py RUNDIR

RUNDIR is one run's folder kept by `bench-shaped.sh --keep` (runs/ring-r1, runs/join-r2,
runs/get-r1 …): clock.txt (when the clock started, the owner's uplink), owner-events.jsonl,
rI-events.jsonl and rI/*.manifest.json. Prints the start-up (clock start to the first chunk
leaving the owner and reaching a receiver), how many chunks the owner sent against the
file's count (every extra copy costs the swarm's scarcest uplink), the time the owner's
uplink needed for them, the tail (the owner's last send to the last receiver's last chunk),
the finish (last chunk to the clock's stop: the receivers' whole-file check), then one line
per receiver. Python 3 standard library only.
"""
import collections
import glob
import json
import os
import sys

TCP_EFFICIENCY = 1448 / 1514  # payload per byte tbf counts, 1500-byte MTU with timestamps


def events(path):
    out = []
    with open(path) as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    rd = sys.argv[1]
    info = dict(l.strip().split("=", 1) for l in open(os.path.join(rd, "clock.txt")) if "=" in l)
    t0 = float(info["t0"])
    rate = float(info["owner_rate_bits"])
    manifest = json.load(open(glob.glob(os.path.join(rd, "r1", "*.manifest.json"))[0]))
    size, chunk = manifest["size"], manifest["chunk_size"]
    nchunks = (size + chunk - 1) // chunk
    owner = events(os.path.join(rd, "owner-events.jsonl"))
    sent = [e for e in owner if e.get("event") == "chunk_sent"]
    if not sent:
        sys.exit("the owner sent no chunk")
    copies = collections.Counter(e["chunk"] for e in sent)
    seen, last_first = set(), 0.0
    for e in sent:
        if e["chunk"] not in seen:
            seen.add(e["chunk"])
            last_first = e["ts"] - t0
    wire = len(sent) * chunk * 8 / rate / TCP_EFFICIENCY
    ideal = size * 8 / rate
    print(f"file: {size} bytes, {nchunks} chunks of {chunk}; owner uplink {rate / 1e6:g} Mbit/s; "
          f"fluid time of the file at the owner {ideal:.3f} s")
    receivers = sorted(glob.glob(os.path.join(rd, "r*-events.jsonl")),
                       key=lambda p: int(os.path.basename(p)[1:].split("-")[0]))
    rows, firsts, lasts = [], [], []
    for path in receivers:
        ev = events(path)
        got = [e for e in ev if e.get("event") == "chunk_received"]
        if not got:
            continue
        src = collections.Counter("owner" if e["neighbour"].split(":")[0] == info.get("owner_ip") else "others"
                                  for e in got)
        first, last = got[0]["ts"] - t0, got[-1]["ts"] - t0
        firsts.append(first)
        lasts.append(last)
        rows.append(f"  {os.path.basename(path).split('-')[0]:>4}: first chunk +{first:.3f} s, last +{last:.3f} s; "
                    f"{src['owner']} from the owner, {src['others']} from other receivers")
    print(f"start-up: first chunk leaves the owner at +{sent[0]['ts'] - t0:.3f} s, reaches a receiver at "
          f"+{min(firsts):.3f} s (the last receiver's first chunk +{max(firsts):.3f} s)")
    print(f"owner: sent {len(sent)} chunks for {nchunks} ({len(sent) / nchunks:.2f}×; "
          f"{sum(v - 1 for v in copies.values())} extra copies); at its uplink that is {wire:.3f} s with TCP/IP "
          f"headers; first copy of the last new chunk sent +{last_first:.3f} s, last send +{sent[-1]['ts'] - t0:.3f} s")
    print(f"tail: last receiver's last chunk +{max(lasts):.3f} s, {max(lasts) - (sent[-1]['ts'] - t0):.3f} s "
          f"after the owner's last send")
    done = [float(v) - t0 for k, v in info.items() if k.startswith("done_r")]
    if done:
        print(f"complete: the last receiver's verified file at +{max(done):.3f} s (the clock's stop), "
              f"{max(done) - max(lasts):.3f} s after the last chunk arrived (the whole-file check)")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
