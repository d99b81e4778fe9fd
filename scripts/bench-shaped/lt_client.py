#!/usr/bin/env python3
"""A minimal BitTorrent client on libtorrent-rasterbar's Python bindings, for bench-shaped.sh.

  lt_client.py --torrent T --dir D --bind IP --port P [--seed] [--done FILE]

Seeder (--seed): D already holds the data; it is added in seed mode (no re-hash). Leecher:
downloads into D; when libtorrent reports the torrent finished (every piece SHA-1 checked) it
writes time.time() to --done, and keeps seeding until SIGTERM, then prints its upload and
download byte counts. Listens on IP:P only, connects out from IP only; DHT, LSD, UPnP,
NAT-PMP and uTP are off (and PEX, as the torrent is private). Adapted from
../shared/bench-anchors/lt_client.py. Needs `import libtorrent` (Debian python3-libtorrent,
or `pip install libtorrent`).
"""
import argparse
import signal
import sys
import time

import libtorrent as lt

ap = argparse.ArgumentParser()
ap.add_argument("--torrent", required=True)
ap.add_argument("--dir", required=True)
ap.add_argument("--bind", required=True)
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--seed", action="store_true")
ap.add_argument("--done")
a = ap.parse_args()

ses = lt.session(
    {
        "listen_interfaces": f"{a.bind}:{a.port}",
        "outgoing_interfaces": a.bind,
        "announce_ip": a.bind,
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_incoming_utp": False,
        "enable_outgoing_utp": False,
        "alert_mask": lt.alert.category_t.status_notification | lt.alert.category_t.error_notification,
    }
)
atp = lt.add_torrent_params()
atp.ti = lt.torrent_info(a.torrent)
atp.save_path = a.dir
if a.seed:
    atp.flags |= lt.torrent_flags.seed_mode
h = ses.add_torrent(atp)

stop = False


def on_term(*_):
    global stop
    stop = True


signal.signal(signal.SIGTERM, on_term)
signal.signal(signal.SIGINT, on_term)

done_written = a.seed
while not stop:
    ses.wait_for_alert(50)
    for al in ses.pop_alerts():
        if isinstance(al, lt.torrent_finished_alert) and not done_written:
            with open(a.done, "w") as f:
                f.write(f"{time.time():.6f}\n")
            done_written = True
        elif al.category() & lt.alert.category_t.error_notification:
            print("error:", al.message(), file=sys.stderr, flush=True)
    if not done_written and h.status().is_seeding:
        # in case the finished alert was missed
        with open(a.done, "w") as f:
            f.write(f"{time.time():.6f}\n")
        done_written = True

st = h.status()
print(f"uploaded_bytes={st.all_time_upload} downloaded_bytes={st.all_time_download}", flush=True)
h.pause()
del ses
