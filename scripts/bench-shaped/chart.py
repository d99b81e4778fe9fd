#!/usr/bin/env python3
"""Bar chart (SVG) of bench-shaped.sh's results: each contender's median time, its single
runs as dots, and the fluid bound as a dashed line. Python 3 standard library only.

  chart.py RESULTS.csv OUT.svg --bound SECS [--title TEXT] [--subtitle TEXT]

RESULTS.csv has the header contender,round,seconds,ratio; rows whose seconds is not a number
(failed runs) are left out. Contenders appear in the order of their first row.
"""
import argparse
import csv
import html
import statistics


def nice_step(top):
    """A round tick step giving 4 to 10 ticks up to top."""
    step = 10 ** len(str(int(max(top, 1e-9)))) / 100 if top >= 1 else 0.1
    while top / step > 10:
        for m in (2, 2.5, 2):
            step *= m
            if top / step <= 10:
                break
    return step


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv")
    ap.add_argument("out")
    ap.add_argument("--bound", type=float, required=True)
    ap.add_argument("--title", default="Shaped network: time for every receiver to hold the file")
    ap.add_argument("--subtitle", default="")
    a = ap.parse_args()

    runs = {}
    with open(a.csv, newline="") as f:
        for row in csv.DictReader(f):
            try:
                s = float(row["seconds"])
            except (ValueError, KeyError):
                continue
            runs.setdefault(row["contender"], []).append(s)
    names = list(runs)
    medians = [statistics.median(runs[n]) for n in names]

    top = max(medians + [max(v) for v in runs.values()] + [a.bound]) * 1.15 if names else a.bound * 2
    step = nice_step(top)
    ticks = []
    t = 0.0
    while t <= top + 1e-9:
        ticks.append(t)
        t += step
    top = ticks[-1] if ticks[-1] >= top else top

    left, right, head, foot = 70, 30, 70, 90
    bar_w, gap = 56, 30
    width = max(720, left + right + len(names) * (bar_w + gap) + gap)
    plot_h = 300
    height = head + plot_h + foot

    def y(v):
        return head + plot_h - v / top * plot_h

    e = html.escape
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="24" font-size="15" font-weight="bold">{e(a.title)}</text>',
        f'<text x="{left}" y="44" fill="#444">{e(a.subtitle)}</text>',
    ]
    for t in ticks:
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y(t):.1f}" y2="{y(t):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{y(t) + 4:.1f}" text-anchor="end">{t:g} s</text>')
    out.append(f'<line x1="{left}" x2="{left}" y1="{head}" y2="{head + plot_h}" stroke="#333"/>')
    out.append(f'<line x1="{left}" x2="{width - right}" y1="{head + plot_h}" y2="{head + plot_h}" stroke="#333"/>')
    for i, (n, m) in enumerate(zip(names, medians)):
        x = left + gap + i * (bar_w + gap)
        ring = n in ("ring", "join", "get")
        color = "#2b6cb0" if ring else "#a0aec0"
        out.append(
            f'<rect x="{x}" y="{y(m):.1f}" width="{bar_w}" height="{head + plot_h - y(m):.1f}" fill="{color}">'
            f"<title>{e(n)}: median {m:.2f} s over {len(runs[n])} runs</title></rect>"
        )
        for s in runs[n]:
            out.append(f'<circle cx="{x + bar_w / 2:.1f}" cy="{y(s):.1f}" r="2.5" fill="#222" opacity="0.6"/>')
        label_y = y(max([m] + runs[n])) - 5  # above the bar and its highest dot
        out.append(f'<text x="{x + bar_w / 2:.1f}" y="{label_y - 13:.1f}" text-anchor="middle">{m:.2f} s</text>')
        out.append(
            f'<text x="{x + bar_w / 2:.1f}" y="{label_y:.1f}" text-anchor="middle" fill="#555">'
            f"{m / a.bound:.2f}×</text>"
        )
        out.append(
            f'<text x="{x + bar_w / 2:.1f}" y="{head + plot_h + 16}" text-anchor="middle">{e(n)}</text>'
        )
    yb = y(a.bound)
    out.append(
        f'<line x1="{left}" x2="{width - right}" y1="{yb:.1f}" y2="{yb:.1f}" stroke="#c53030" '
        f'stroke-width="1.5" stroke-dasharray="6 4"/>'
    )
    out.append(
        f'<text x="{width - right}" y="{yb - 5:.1f}" text-anchor="end" fill="#c53030">'
        f"fluid bound {a.bound:.2f} s</text>"
    )
    out.append(
        f'<text x="{left}" y="{height - 40}" fill="#444">Bars: median of the rounds; dots: single rounds; '
        f"labels: median and its ratio to the bound.</text>"
    )
    out.append(
        f'<text x="{left}" y="{height - 22}" fill="#444">Blue: ringswarm (ring, join, get); grey: nginx fan-out and BitTorrent clients.</text>'
    )
    out.append("</svg>")
    with open(a.out, "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
