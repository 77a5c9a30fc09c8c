#!/usr/bin/env python3
"""SVG plots from the bench's JSON (no dependencies beyond Python 3).

    python3 bench/plot.py [bench/results]

writes hit-throughput.svg (MiB/s and server CPU seconds per GiB, per
protocol and server), hit-ratio.svg (object hit ratio against cache size,
lru dashed, s3-fifo solid, one colour per workload) and failover.svg (each
trial's time out of steering's answers and back in, against the liveness
silence limit and the 3 s target) next to the JSON files that exist.
"""
import json
import os
import sys

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
SERVERS = {"outpost": "#1f77b4", "nginx": "#2ca02c", "caddy": "#ff7f0e"}


def text(x, y, s, size=12, anchor="start", weight="normal"):
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
            f'font-weight="{weight}" font-family="sans-serif">{s}</text>')


def bars(summary, key, title, x0, y0, w, h):
    """One grouped bar chart: groups = protocols, bars = servers."""
    out = [text(x0 + w / 2, y0 - 10, title, 14, "middle", "bold")]
    protos = [p for p in ["h1", "h2", "h3"] if any(s["proto"] == p for s in summary)]
    top = max(s[key] for s in summary) * 1.1
    out.append(f'<line x1="{x0}" y1="{y0 + h}" x2="{x0 + w}" y2="{y0 + h}" stroke="black"/>')
    gw = w / len(protos)
    for gi, p in enumerate(protos):
        group = [s for s in summary if s["proto"] == p]
        bw = gw * 0.8 / len(SERVERS)
        for s in group:
            bi = list(SERVERS).index(s["server"])
            bh = h * s[key] / top
            bx = x0 + gi * gw + gw * 0.1 + bi * bw
            out.append(f'<rect x="{bx:.1f}" y="{y0 + h - bh:.1f}" width="{bw * 0.9:.1f}" '
                       f'height="{bh:.1f}" fill="{SERVERS[s["server"]]}"/>')
            fmt = f'{s[key]:.0f}' if s[key] >= 10 else f'{s[key]:.2f}'
            out.append(text(bx + bw * 0.45, y0 + h - bh - 3, fmt, 10, "middle"))
        out.append(text(x0 + gi * gw + gw / 2, y0 + h + 16, p, 12, "middle"))
    return out


def hit_throughput(d):
    w, h = 900, 380
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}">',
           '<rect width="100%" height="100%" fill="white"/>']
    out += bars(d["summary"], "mib_per_s", "MiB/s (higher is better)", 40, 50, 380, 260)
    out += bars(d["summary"], "server_cpu_s_per_gib", "server CPU s per GiB (lower is better)",
                480, 50, 380, 260)
    for i, (name, colour) in enumerate(SERVERS.items()):
        out.append(f'<rect x="{300 + i * 110}" y="{h - 28}" width="12" height="12" fill="{colour}"/>')
        out.append(text(316 + i * 110, h - 18, name))
    out.append("</svg>")
    return "\n".join(out)


def hit_ratio(d):
    w, h, x0, y0, pw, ph = 760, 460, 60, 40, 480, 360
    reps = d["replays"]
    workloads = list(dict.fromkeys(r["workload"] for r in reps))
    fracs = sorted({r["cache_fraction"] for r in reps})
    xs = {f: x0 + pw * i / max(1, len(fracs) - 1) for i, f in enumerate(fracs)}
    y = lambda v: y0 + ph * (1 - v)  # noqa: E731
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}">',
           '<rect width="100%" height="100%" fill="white"/>',
           text(x0 + pw / 2, 22, "object hit ratio: s3-fifo (solid) vs lru (dashed)", 14, "middle", "bold"),
           f'<line x1="{x0}" y1="{y0 + ph}" x2="{x0 + pw}" y2="{y0 + ph}" stroke="black"/>',
           f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y0 + ph}" stroke="black"/>']
    for v in range(0, 101, 20):
        out.append(text(x0 - 6, y(v / 100) + 4, f"{v}%", 10, "end"))
        out.append(f'<line x1="{x0}" y1="{y(v / 100):.1f}" x2="{x0 + pw}" y2="{y(v / 100):.1f}" '
                   'stroke="#ddd"/>')
    for f in fracs:
        out.append(text(xs[f], y0 + ph + 16, f"{f * 100:g}%", 10, "middle"))
    out.append(text(x0 + pw / 2, y0 + ph + 34, "cache size (share of the catalog's bytes)", 11, "middle"))
    for wi, wl in enumerate(workloads):
        colour = COLOURS[wi % len(COLOURS)]
        for policy, dash in [("s3-fifo", ""), ("lru", ' stroke-dasharray="5,4"')]:
            pts = sorted((r["cache_fraction"], r["object_hit_ratio"]) for r in reps
                         if r["workload"] == wl and r["policy"] == policy)
            path = " ".join(f"{xs[f]:.1f},{y(v):.1f}" for f, v in pts)
            out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
        out.append(f'<rect x="{x0 + pw + 20}" y="{y0 + wi * 20}" width="12" height="12" fill="{colour}"/>')
        out.append(text(x0 + pw + 36, y0 + wi * 20 + 10, wl, 11))
    out.append("</svg>")
    return "\n".join(out)


def failover(d):
    w, h, x0, y0, pw, ph = 760, 400, 60, 40, 560, 300
    trials = d["trials"]
    top = max([t["out_ms"] for t in trials] + [t["back_ms"] for t in trials] + [3000]) * 1.1
    y = lambda v: y0 + ph * (1 - v / top)  # noqa: E731
    x = lambda i: x0 + pw * (i + 0.5) / max(1, len(trials))  # noqa: E731
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}">',
           '<rect width="100%" height="100%" fill="white"/>',
           text(x0 + pw / 2, 22, "kill -9 an edge: ms until steering stops naming it (and names it again after a restart)",
                13, "middle", "bold"),
           f'<line x1="{x0}" y1="{y0 + ph}" x2="{x0 + pw}" y2="{y0 + ph}" stroke="black"/>',
           f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y0 + ph}" stroke="black"/>']
    step = 500 if top < 6000 else 1000
    for v in range(0, int(top), step):
        out.append(text(x0 - 6, y(v) + 4, f"{v}", 10, "end"))
        out.append(f'<line x1="{x0}" y1="{y(v):.1f}" x2="{x0 + pw}" y2="{y(v):.1f}" stroke="#eee"/>')
    limits = [(d["silence_limit_ms"], "silence limit", "#999", -4), (3000, "target (3 s)", "#d62728", 12)]
    if "connection_limit_ms" in d:
        limits.append((d["connection_limit_ms"], "connection limit", "#1f77b4", -4))
    for v, label, colour, dy in limits:
        out.append(f'<line x1="{x0}" y1="{y(v):.1f}" x2="{x0 + pw}" y2="{y(v):.1f}" stroke="{colour}" '
                   'stroke-dasharray="5,4"/>')
        out.append(text(x0 + pw + 6, y(v) + dy, label, 10))
    for i, t in enumerate(trials):
        out.append(f'<circle cx="{x(i):.1f}" cy="{y(t["out_ms"]):.1f}" r="4" fill="{COLOURS[0]}"/>')
        out.append(f'<rect x="{x(i) - 3:.1f}" y="{y(t["back_ms"]) - 3:.1f}" width="6" height="6" fill="{COLOURS[2]}"/>')
    out.append(text(x0 + pw / 2, y0 + ph + 20, "trial", 11, "middle"))
    out.append(f'<circle cx="{x0 + 10}" cy="{h - 22}" r="4" fill="{COLOURS[0]}"/>')
    out.append(text(x0 + 20, h - 18, "kill -9 → out of the answers"))
    out.append(f'<rect x="{x0 + 247}" y="{h - 25}" width="6" height="6" fill="{COLOURS[2]}"/>')
    out.append(text(x0 + 260, h - 18, "restart → named again"))
    out.append("</svg>")
    return "\n".join(out)


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "bench/results"
    for name, plot in [("hit-throughput", hit_throughput), ("hit-ratio", hit_ratio),
                       ("failover", failover)]:
        src = os.path.join(root, f"{name}.json")
        if os.path.exists(src):
            with open(src) as f:
                svg = plot(json.load(f))
            dst = os.path.join(root, f"{name}.svg")
            with open(dst, "w") as f:
                f.write(svg + "\n")
            print("wrote", dst)


if __name__ == "__main__":
    main()
