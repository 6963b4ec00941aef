"""The cost curve as PNG images, drawn from the generator's JSON results (results.jsonl of scripts/bench).

Reads every `cost` line: one fan-out run with the target's memory and CPU time measured (imcloud-bench
cost). Groups them by target and by subscribers per server process, takes the median of the repeated runs,
and draws two images into OUTDIR:

- cost-memory.png: the target's resident memory per subscriber (KiB) against subscribers;
- cost-cpu.png: the target's CPU time per 1,000 deliveries (CPU-ms, so 1 = 1 µs per delivery) against
  subscribers.

Both axes are logarithmic: the peers differ from imcloud by tens of times.

It also prints the medians as a markdown table, which docs/benchmarks.md shows beside the images.
Usage: bench-plot.py RESULTS.jsonl [MORE.jsonl ...] OUTDIR (scripts/bench runs it with matplotlib from a
venv under .cache/).
"""

import json
import statistics
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MEMORY = "server RSS per subscriber"
CPU = "server CPU per 1,000 deliveries"


def load(paths):
    """{target: {subscribers: {figure: [values]}}} from the cost lines of the files, in first-seen order."""
    points = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for path in paths:
        with open(path) as f:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    report = json.loads(line)
                except json.JSONDecodeError as e:
                    sys.exit(f"{path} line {n}: not a result line ({e})")
                if report.get("scenario") != "cost":
                    continue
                params = dict(report.get("params", []))
                subscribers = int(params.get("subscribers", 0))
                figures = {f["name"]: f["value"] for f in report.get("figures", [])}
                for name in (MEMORY, CPU):
                    if name in figures:
                        points[report["target"]][subscribers][name].append(figures[name])
    return points


def medians(points):
    return {
        target: {
            n: {name: statistics.median(vals) for name, vals in figs.items()}
            for n, figs in sorted(by_n.items())
        }
        for target, by_n in points.items()
    }


def plot(med, figure, ylabel, title, path):
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for target, by_n in med.items():
        xs = [n for n in by_n if figure in by_n[n]]
        ys = [by_n[n][figure] for n in xs]
        if xs:
            ax.plot(xs, ys, marker="o", label=target)
    ax.set_xscale("log")
    ax.set_xticks(sorted({n for by_n in med.values() for n in by_n}))
    ax.get_xaxis().set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{int(v):,}"))
    # The peers differ by tens of times: a log scale keeps imcloud and the bare server apart from each other.
    ax.set_yscale("log")
    ax.get_yaxis().set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.get_yaxis().set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.minorticks_off()
    ax.set_xlabel("subscribers per server process (one room)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def table(med):
    sizes = sorted({n for by_n in med.values() for n in by_n})
    head = "| target | " + " | ".join(f"{n:,}: KiB/sub, CPU-ms/1k" for n in sizes) + " |"
    rows = [head, "|---|" + "---:|" * len(sizes)]
    for target, by_n in med.items():
        cells = []
        for n in sizes:
            f = by_n.get(n, {})
            mem, cpu = f.get(MEMORY), f.get(CPU)
            cells.append(
                "–" if mem is None or cpu is None else f"{mem:.2f}, {cpu:.3f}"
            )
        rows.append(f"| {target} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: bench-plot.py RESULTS.jsonl [MORE.jsonl ...] OUTDIR")
    *paths, outdir = sys.argv[1:]
    med = medians(load(paths))
    if not med:
        sys.exit("no cost results in " + ", ".join(paths))
    plot(med, MEMORY, "server memory per subscriber (KiB)", "Memory per subscriber", f"{outdir}/cost-memory.png")
    plot(
        med,
        CPU,
        "server CPU-ms per 1,000 deliveries",
        "CPU per delivery (fan-out, 64-byte messages)",
        f"{outdir}/cost-cpu.png",
    )
    print(table(med))
    print(f"\nwrote {outdir}/cost-memory.png and {outdir}/cost-cpu.png")


if __name__ == "__main__":
    main()
