"""The soak's plot and verdict, from what scripts/soak left in its results directory DIR:

- samples.csv: `t,role,rss_bytes,open_fds,tokio_tasks`, one line per role per sample (every 10 s);
- lag.txt: `<unix seconds> <lag> <end offsets>` per sample, the jobs' consumer group lag (scripts/kafka/KafkaTool.java lag);
- soak.json: the load generator's report (imcloud-bench --json soak).

Draws DIR/soak.png (resident memory, open descriptors, live tokio tasks per role and the Kafka lag, against
minutes since the cluster started) and prints a markdown verdict.

Flat or not: after a warm-up (5 minutes, or a sixth of a shorter run), the mean of the first window (the
next 5 minutes, or a sixth) is compared with the mean of the last window (the last 5 minutes, or a sixth).
A series grows when its last mean exceeds its first mean by more than its tolerance:

- resident memory: 10 % + 8 MiB;
- open descriptors: 10 % + 8;
- tokio tasks: 10 % + 16;
- Kafka lag: 500 messages.

Exits 1 when a series grows, when a push was lost or an IM message is missing after the last sync (the
generator's counts), or when a role stopped answering; else 0. Usage: soak-plot.py DIR [PNG]
(scripts/soak runs it with matplotlib from the venv under .cache/).
"""

import csv
import json
import math
import os
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MIB = 1024 * 1024
# (column, title, unit divisor, unit, relative tolerance, absolute tolerance in the column's own unit)
SERIES = [
    ("rss_bytes", "resident memory", MIB, "MiB", 0.10, 8 * MIB),
    ("open_fds", "open descriptors", 1, "", 0.10, 8),
    ("tokio_tasks", "live tokio tasks", 1, "", 0.10, 16),
]
LAG_TOLERANCE = 500


def load_samples(path):
    """{role: [(t, {column: value or None})]} in file order."""
    out = defaultdict(list)
    with open(path) as f:
        for row in csv.DictReader(f):
            vals = {}
            for col, *_ in SERIES:
                v = row.get(col, "")
                vals[col] = float(v) if v not in ("", None) else None
            out[row["role"]].append((float(row["t"]), vals))
    return out


def load_lag(path):
    """[(t, lag)] of the samples that worked."""
    out = []
    if not os.path.exists(path):
        return out
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[1] != "nan":
                out.append((float(parts[0]), float(parts[1])))
    return out


def mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else math.nan


def window(points, lo, hi):
    return [v for t, v in points if lo <= t <= hi]


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    d = sys.argv[1]
    png = sys.argv[2] if len(sys.argv) > 2 else os.path.join(d, "soak.png")
    samples = load_samples(os.path.join(d, "samples.csv"))
    lag = load_lag(os.path.join(d, "lag.txt"))
    with open(os.path.join(d, "soak.json")) as f:
        report = json.loads(f.readline())
    figures = {x["name"]: x["value"] for x in report["figures"]}

    t0 = min(pts[0][0] for pts in samples.values())
    t1 = max(pts[-1][0] for pts in samples.values())
    span = t1 - t0
    warm = min(300.0, span / 6)
    win = min(300.0, span / 6)
    first = (t0 + warm, t0 + warm + win)
    last = (t1 - win, t1)

    problems = []
    lines = [
        f"Sampled for {span / 60:.1f} minutes every "
        f"{span / max(1, len(next(iter(samples.values()))) - 1):.0f} s; warm-up {warm / 60:.1f} min, "
        f"first window minutes {(first[0] - t0) / 60:.1f}-{(first[1] - t0) / 60:.1f}, "
        f"last window minutes {(last[0] - t0) / 60:.1f}-{(last[1] - t0) / 60:.1f}.",
        "",
        "| role | " + " | ".join(f"{title} first → last" for _, title, *_ in SERIES) + " | verdict |",
        "|---|" + "---|" * (len(SERIES) + 1),
    ]
    for role, pts in samples.items():
        cells = []
        grew = []
        missing = sum(1 for _, v in pts if v["rss_bytes"] is None)
        for col, title, div, unit, rel, ab in SERIES:
            series = [(t, v[col]) for t, v in pts]
            a = mean(window(series, *first))
            b = mean(window(series, *last))
            limit = a * (1 + rel) + ab
            if not (b <= limit):
                grew.append(title)
            u = f" {unit}" if unit else ""
            cells.append(f"{a / div:.1f} → {b / div:.1f}{u}")
        verdict = "flat" if not grew else "grows: " + ", ".join(grew)
        if missing:
            verdict += f"; {missing} samples without an answer"
            problems.append(f"{role}: {missing} samples without an answer")
        if grew:
            problems.append(f"{role}: {', '.join(grew)} grew")
        lines.append(f"| {role} | " + " | ".join(cells) + f" | {verdict} |")

    lag_first = mean(window(lag, *first))
    lag_last = mean(window(lag, *last))
    lag_max = max((v for _, v in lag), default=math.nan)
    lag_ok = lag_last <= lag_first + LAG_TOLERANCE
    if not lag_ok:
        problems.append("Kafka lag grew")
    lines += [
        "",
        f"Kafka consumer lag: mean {lag_first:.1f} → {lag_last:.1f} messages, max {lag_max:.0f} "
        f"({len(lag)} samples): {'flat' if lag_ok else 'grows'}.",
        "",
    ]

    lost = figures.get("push deliveries lost", math.nan)
    im_missing = figures.get("IM missing after the last sync", math.nan)
    if not lost == 0:
        problems.append(f"{lost:.0f} push deliveries lost")
    if not im_missing == 0:
        problems.append(f"{im_missing:.0f} IM messages missing after the last sync")
    lines.append("| load | count |")
    lines.append("|---|---|")
    for name, value in figures.items():
        lines.append(f"| {name} | {value:.0f} |")
    lines.append("")
    lines.append("Verdict: " + ("PASS (flat, nothing lost)" if not problems else "FAIL: " + "; ".join(problems)))
    print("\n".join(lines))

    # The plot: one panel per series and one for the lag, minutes since the first sample.
    fig, axes = plt.subplots(4, 1, figsize=(9, 11), sharex=True)
    for ax, (col, title, div, unit, *_rest) in zip(axes, SERIES):
        for role, pts in samples.items():
            xs = [(t - t0) / 60 for t, v in pts if v[col] is not None]
            ys = [v[col] / div for t, v in pts if v[col] is not None]
            ax.plot(xs, ys, label=role, linewidth=1.2)
        ax.set_ylabel(f"{title}" + (f" ({unit})" if unit else ""))
        if col == "rss_bytes":
            # logic (with the IM tier's password hashing and database pool) is far above the others.
            ax.set_yscale("log")
        else:
            ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
    axes[0].legend(loc="lower right", ncol=3, fontsize=8)
    ax = axes[3]
    ax.plot([(t - t0) / 60 for t, _ in lag], [v for _, v in lag], color="black", linewidth=1.2)
    ax.set_ylabel("Kafka consumer lag (messages)")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.set_xlabel("minutes since the cluster started")
    for ax in axes:
        for lo, hi in (first, last):
            ax.axvspan((lo - t0) / 60, (hi - t0) / 60, color="tab:green", alpha=0.08)
    fig.suptitle(
        f"imcloud soak: {report['params'][0][1]} s of load, "
        + ", ".join(f"{k} {v}" for k, v in report["params"][1:2] + report["params"][6:7])
        + "\n(shaded: the first and last windows compared)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
