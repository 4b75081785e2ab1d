"""Turns the raw results of benches/run.sh into benches/RESULTS.md and the PNG plots beside it.

Usage: python benches/report.py RESULTS_DIR [--measure-seconds S]
RESULTS_DIR holds machine.json, ipc.json (shmpool bench --compare --json), gst.jsonl, python.txt
(handoff.py --json output), async_rust.json and async_python.json (examples/async_handoff.rs and
bindings/python/benches/async_handoff.py --json), store.json (store_latency.py --json) and farm.txt
(crates/farm/bench/run.sh, tcp then ipc); criterion's estimates are read from target/criterion.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
BENCHES = ROOT / "benches"

SHMPOOL_1 = ["shmpool-blocking", "shmpool-spin"]
COPYING = ["futex-pingpong", "pipe", "unix-socket", "tcp-loopback"]
LABELS = {
    "shmpool-blocking": "shmpool blocking",
    "shmpool-spin": "shmpool spin",
    "shmpool-blocking-bcast2": "shmpool blocking, 2 consumers (broadcast)",
    "shmpool-spin-bcast2": "shmpool spin, 2 consumers (broadcast)",
    "shmpool-blocking-wq2": "shmpool blocking, work queue of 2",
    "shmpool-spin-wq2": "shmpool spin, work queue of 2",
    "futex-pingpong": "futex ping-pong (copy)",
    "pipe": "pipe (copy)",
    "unix-socket": "Unix socket (copy)",
    "tcp-loopback": "TCP loopback (copy)",
    "iceoryx2-poll": "iceoryx2 busy-poll",
    "iceoryx2-blocking": "iceoryx2 blocking (listener)",
}


def size_name(n: int) -> str:
    if n == 1920 * 1080 * 3:
        return "1080p RGB"
    for unit, shift in (("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n} B"


def ns(v: float) -> str:
    if v < 1e3:
        return f"{v:.0f} ns"
    if v < 1e6:
        return f"{v / 1e3:.1f} µs"
    if v < 1e9:
        return f"{v / 1e6:.2f} ms"
    return f"{v / 1e9:.2f} s"


def rate(v: float) -> str:
    if v >= 1e6:
        return f"{v / 1e6:.2f} M"
    if v >= 1e3:
        return f"{v / 1e3:.1f} k"
    return f"{v:.0f}"


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**met**" if ok else "**missed**")


class Ipc:
    def __init__(self, data: dict):
        self.data = data
        self.rows = data["results"]
        self.payloads = sorted({r["payload_bytes"] for r in self.rows})
        self.names = list(dict.fromkeys(r["name"] for r in self.rows))

    def row(self, name: str, payload: int) -> dict | None:
        return next((r for r in self.rows if r["name"] == name and r["payload_bytes"] == payload), None)

    def p50(self, name: str, payload: int) -> float | None:
        r = self.row(name, payload)
        return r["deliver"]["p50_ns"] if r else None


def spread(row: dict) -> str:
    """` (1.2 µs–3.4 µs)`: the lowest and highest round's hand-off p50, to tell machine variance
    from a change (empty for a single round or output of an older CLI)."""
    p50s = row.get("round_p50s_ns") or []
    return f" ({ns(min(p50s))}–{ns(max(p50s))})" if len(p50s) > 1 else ""


def ipc_tables(ipc: Ipc) -> list[str]:
    out = []
    for payload in ipc.payloads:
        out += [
            f"#### {size_name(payload)} ({payload} bytes)",
            "",
            "| transport | hand-off p50 | p99 | p99.9 | read-all p50 | msgs/s | GB/s | CPU/msg, 1 in flight | CPU/msg, streaming |",
            "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
        ]
        for name in ipc.names:
            r = ipc.row(name, payload)
            if not r:
                continue
            d = r["deliver"]
            out.append(
                f"| {LABELS.get(name, name)} | {ns(d['p50_ns'])}{spread(r)} | {ns(d['p99_ns'])} | {ns(d['p999_ns'])} "
                f"| {ns(r['p50_ns'])} | {rate(r['msgs_per_s'])} | {r['gb_per_s']:.2f} "
                f"| {ns(r['cpu_per_msg_ns'])} | {ns(r['cpu_per_msg_stream_ns'])} |"
            )
        out.append("")
    return out


def plot_latency(ipc: Ipc, path: pathlib.Path) -> None:
    xs = ipc.payloads
    single = [n for n in ipc.names if not n.endswith(("bcast2", "wq2"))]
    multi = [n for n in ipc.names if n.startswith("shmpool")]
    fig, axes = plt.subplots(1, 3, figsize=(17, 5.6))
    panels = (
        (axes[0], single, "deliver", "one consumer: hand-off latency p50"),
        (axes[1], multi, "deliver", "shmpool, 1 and 2 consumers: hand-off latency p50"),
        (axes[2], single, "gb", "one consumer: streaming throughput"),
    )
    for ax, names, field, title in panels:
        for name in names:
            pts = [(i, ipc.row(name, p)) for i, p in enumerate(xs) if ipc.row(name, p)]
            if field == "deliver":
                ys = [r["deliver"]["p50_ns"] / 1e3 for _, r in pts]
            else:
                ys = [max(r["gb_per_s"], 1e-4) for _, r in pts]
            style = "-" if name.startswith("shmpool") else ("--" if name.startswith("iceoryx2") else ":")
            marker = "o" if name.startswith("shmpool") else ("s" if name.startswith("iceoryx2") else "^")
            if name.endswith(("bcast2", "wq2")):
                marker = "D" if name.endswith("bcast2") else "v"
            ax.plot([i for i, _ in pts], ys, style, marker=marker, label=LABELS.get(name, name), linewidth=1.6)
        ax.set_yscale("log")
        ax.set_xticks(range(len(xs)))
        ax.set_xticklabels([size_name(p).replace(" RGB", "\nRGB") for p in xs])
        ax.set_xlabel("payload (ordered by size)")
        ax.set_ylabel("µs (log)" if field == "deliver" else "GB/s of payload (log)")
        ax.set_title(title, fontsize=10.5)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7.5, loc="upper left" if field == "deliver" else "lower right")
    fig.suptitle("Two processes; latency with one message in flight, throughput streaming (benches/run.sh)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def gst_summary(lines: list[dict]) -> dict:
    out = {}
    for system in ("shmpool", "shmsink"):
        for consumers in (1, 2):
            runs = [r for r in lines if r["system"] == system and r["consumers"] == consumers]
            ok = [r["fps"] for r in runs if not r["stalled"]]
            out[(system, consumers)] = {
                "runs": len(runs),
                "stalls": sum(r["stalled"] for r in runs),
                "median": statistics.median(ok) if ok else 0.0,
                "min": min(ok) if ok else 0.0,
                "max": max(ok) if ok else 0.0,
            }
    base = [r["fps"] for r in lines if r["system"] == "source-only"]
    out["source"] = statistics.median(base) if base else 0.0
    return out


def read_jsonl(path: pathlib.Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def elements_section(res: pathlib.Path) -> list[str]:
    """The shmpoolsink/shmpoolsrc vs shmsink/shmsrc rows (examples/vs_shmsink in bindings/gstreamer)."""
    runs, stall_runs = read_jsonl(res / "gst-elements.jsonl"), read_jsonl(res / "gst-elements-stalls.jsonl")
    if not runs and not stall_runs:
        return []
    md = [
        "### The elements: shmpoolsink → shmpoolsrc vs shmsink → shmsrc",
        "",
        "bindings/gstreamer/benches/vs_shmsink.sh: one sink process, one `source ! fakesink` process per consumer. "
        "*pool*: `videotestsrc pattern=black` allocates from the sink's proposed pool; *copy*: an appsrc pushes "
        "frames it drew into its own buffers, so both sinks copy. Latency: CLOCK_MONOTONIC at the sink's pad to the "
        "source's push, paired by a frame number in the first bytes; CPU: user + system of all processes over the "
        "measured frames. Medians over the runs; ratios shmpool / shmsink: the median over the repetitions of the "
        "ratio of the two runs measured one after the other (fps: higher is better; CPU, p99: lower).",
        "",
        "| case | consumers | fps | × shmsink | CPU ms/frame | × shmsink | p50 µs | p99 µs | × shmsink | sink copies | runs | stalls |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]

    def med(rows: list[dict], key: str) -> float:
        ok = [r[key] for r in rows if not r["stalled"]]
        return statistics.median(ok) if ok else float("nan")

    for case in ("pool", "copy"):
        for consumers in (1, 2):
            pick = lambda system: [  # noqa: E731
                r for r in runs if r["case"] == case and r["consumers"] == consumers and r["system"] == system
            ]
            ours, theirs = pick("shmpoolsink-elements"), pick("shmsink-elements")
            if not ours:
                continue
            # Ratios per repetition (the two runs were measured one after the other), then the median.
            pairs = [
                (a, b)
                for a in ours
                for b in theirs
                if a["rep"] == b["rep"] and not (a["stalled"] or a.get("failed") or b["stalled"] or b.get("failed"))
            ]
            for name, rows in (("shmpoolsink", ours), ("shmsink", theirs)):
                x = lambda key: (  # noqa: E731
                    f"{statistics.median(a[key] / b[key] for a, b in pairs):.2f} ×" if name == "shmpoolsink" and pairs else ""
                )
                md.append(
                    f"| {case}: {name} | {consumers} | {med(rows, 'fps'):.0f} | {x('fps')} | {med(rows, 'cpu_ms'):.3f} | "
                    f"{x('cpu_ms')} | {med(rows, 'p50_us'):.0f} | {med(rows, 'p99_us'):.0f} | {x('p99_us')} | "
                    f"{max((r['copies'] for r in rows), default=0)} | {len(rows)} | {sum(r['stalled'] for r in rows)} |"
                )
    if stall_runs:
        for system in ("shmpoolsink-elements", "shmsink-elements"):
            rows = [r for r in stall_runs if r["system"] == system]
            if not rows:
                continue
            md.append(
                f"\nStall test, {system.split('-')[0]} → 2 sources: {sum(r['stalled'] for r in rows)} stalls in "
                f"{len(rows)} runs (median {med(rows, 'fps'):.0f} fps)."
            )
    md.append("")
    return md


def plot_frames(g: dict, path: pathlib.Path) -> None:
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    labels, values, errs, colors = [], [], [], []
    for consumers in (1, 2):
        for system, color, label in (
            ("shmpool", "tab:blue", "shmpool\n(gst_to_pool → pool_to_gst)"),
            ("shmsink", "tab:orange", "GStreamer\nshmsink → shmsrc"),
        ):
            s = g[(system, consumers)]
            labels.append(f"{label}\n{consumers} consumer{'s' if consumers > 1 else ''}")
            values.append(s["median"])
            errs.append([[s["median"] - s["min"]], [s["max"] - s["median"]]])
            colors.append(color)
    x = range(len(values))
    ax.bar(x, values, color=colors)
    for i, (v, e) in enumerate(zip(values, errs)):
        ax.errorbar(i, v, yerr=e, color="black", capsize=4)
        ax.text(i, v * 0.5 if v else 1, f"{v:.0f}", ha="center", color="white", fontweight="bold")
    if g["source"]:
        ax.axhline(g["source"], color="gray", linestyle="--", label=f"source alone (median): {g['source']:.0f} fps")
        ax.legend(loc="upper right", fontsize=8)
    ax.set_xticks(list(x))
    ax.set_xticklabels(labels, fontsize=7.5)
    ax.set_ylabel("frames per second (median; bars: min–max)")
    ax.set_title("1920×1080 RGB frames, one producer (videotestsrc)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def python_results(text: str) -> dict | None:
    lines = text.splitlines()
    try:
        start = lines.index("{")
    except ValueError:
        return None
    return json.loads("\n".join(lines[start:]))


def nerfbaselines_table(rows: dict) -> list[str]:
    """The host/worker rows (bindings/python/benches/nerfbaselines_echo.py --json) as markdown."""
    p50 = {name: statistics.median(t) for name, t in rows.items()}
    base = p50.get("nerfbaselines")
    md = [
        "## Host/worker: NerfBaselines' frame",
        "",
        "bindings/python/benches/nerfbaselines_echo.py: `{color: 1920×1080×3 f32, depth: 1920×1080×1 f32}` "
        "(33.2 MB) echoed by a worker process (`copy:copy`). NerfBaselines is pip `nerfbaselines` in a separate "
        "virtual environment (its RemoteProcessRPCBackend: Unix socket plus its shared memory; *no shm*: "
        "`NERFBASELINES_PROTOCOL=pipe-shm0`, *tcp no shm*: `tcp-shm0`). *In place*: arrays allocated in pool slots (`Worker.empty`).",
        "",
        "| transport | p50 | best | p50 vs NerfBaselines |",
        "|---|--:|--:|--:|",
    ]
    for name, times in rows.items():
        vs = f"{base / p50[name]:.1f} ×" if base and not name.startswith("in place") else ""
        md.append(f"| {name} | {ns(p50[name] * 1e9)} | {ns(min(times) * 1e9)} | {vs} |")
    return md + [""]


def store_table(rows: list) -> list[str]:
    """The named-variable rows (bindings/python/benches/store_latency.py --json) as markdown."""
    p50 = {(r["size"], r["method"]): r["p50_us"] for r in rows}
    md = [
        "## Named variables: publish to a reader holding the new version",
        "",
        "bindings/python/benches/store_latency.py: two Python processes, one version every 40 ms at every "
        "size and for every method (so the reader sleeps as long before each one; a CPU that idled longer "
        "wakes slower, whatever the size). shmpool.Store: the writer fills in place, commits; the reader "
        "wakes in `read(newer_than=...)` holding a read-only view. `.npy`: `np.save` + rename in /dev/shm, "
        "`np.load` by name. `shared_memory`: copied in and out under a `multiprocessing.Lock`.",
        "",
        "| size | method | p50 | p99 | p50 vs Store |",
        "|---|---|--:|--:|--:|",
    ]
    for r in rows:
        base = p50.get((r["size"], "shmpool.Store"))
        vs = f"{r['p50_us'] / base:.0f} ×" if base else ""
        md.append(f"| {r['size']} | {r['method']} | {ns(r['p50_us'] * 1e3)} | {ns(r['p99_us'] * 1e3)} | {vs} |")
    return md + [""]


FARM_SYSTEMS = {
    "shm": "shmpool farm",
    "bytes": "shmpool farm, shared memory off",
    "pyzmq": "pyzmq Paranoid Pirate (copy=False)",
}


def farm_medians(text: str) -> dict:
    """crates/farm/bench/run.sh output (a `transport:` line, then markdown rows per round) →
    {(transport, system, workers): (events/s, p50 ms, p99 ms, CPU ms/event)}, medians of the rounds."""
    rounds: dict = {}
    transport = "tcp"
    for line in text.splitlines():
        if line.startswith("transport:"):
            transport = line.split(";")[0].split(":")[1].strip()
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[1].isdigit():
            rounds.setdefault((transport, cells[0], int(cells[1])), []).append([float(c) for c in cells[2:]])
    return {k: tuple(statistics.median(col) for col in zip(*v)) for k, v in rounds.items()}


def farm_table(m: dict) -> list[str]:
    """The farm rows as markdown: events/s of the three systems and the ratios."""
    md = [
        "## Worker farm: SSNet events through a broker",
        "",
        "crates/farm/bench/run.sh: one client sends events of 3 planes of (1, 1, 512, 512) float32 plus names "
        "and metadata strings; the worker returns one plane. shmpool's broker, workers and client (shared memory: "
        "descriptors cross ZeroMQ, the arrays stay in pools; and with shared memory off) against a Paranoid Pirate "
        "broker written with pyzmq sending arrays as `copy=False` frames (the SSNet way), on this host, the same "
        "transport for both. Events/s of the one client (1 / mean round trip), medians of the interleaved rounds; "
        "CPU per event of all processes. Across two hosts: crates/farm/README.md (needs root).",
        "",
        "| transport | workers | shmpool, shared memory | shmpool, bytes | pyzmq | shared ÷ pyzmq | bytes ÷ pyzmq "
        "| p50 shared / pyzmq | CPU per event shared / pyzmq |",
        "|---|--:|--:|--:|--:|--:|--:|---|---|",
    ]
    for transport, system, workers in sorted(k for k in m if k[1] == FARM_SYSTEMS["shm"]):
        shm, by, pz = (m.get((transport, FARM_SYSTEMS[s], workers)) for s in ("shm", "bytes", "pyzmq"))
        if not (shm and by and pz):
            continue
        md.append(
            f"| {transport} | {workers} | {shm[0]:.0f}/s | {by[0]:.0f}/s | {pz[0]:.0f}/s | {shm[0] / pz[0]:.1f} × "
            f"| {by[0] / pz[0]:.2f} × | {shm[1]:.2f} / {pz[1]:.2f} ms | {shm[3]:.2f} / {pz[3]:.2f} ms |"
        )
    return md + [""]


def farm_ratios(m: dict) -> list[float]:
    """Shared memory ÷ pyzmq events/s for every transport and worker count."""
    return [
        v[0] / m[(t, FARM_SYSTEMS["pyzmq"], w)][0]
        for (t, s, w), v in m.items()
        if s == FARM_SYSTEMS["shm"] and (t, FARM_SYSTEMS["pyzmq"], w) in m
    ]


# The event loops' own cost (rows of async_rust.json / async_python.json that are no pool size).
BASELINES = {"socket": "baseline: Unix socket, 8 B", "pipe": "baseline: pipe, 8 B"}


def event_loop_section(rust: dict | None, python: dict | None) -> list[str]:
    """The one-way hand-off of the event-loop APIs against the blocking recv of the same run
    (async_rust.json, async_python.json) as markdown; empty without either."""
    if not rust and not python:
        return []
    md = [
        "## Event loops: one-way hand-off",
        "",
        "A producer process publishes to a consumer process through a one-slot pool (one buffer in flight), "
        "pausing before each publication so that the consumer is asleep and every hand-off is a real wake-up; "
        "latency = the consumer's CLOCK_MONOTONIC when its receive returned minus the producer's stamp, written "
        "into the buffer just before `publish`. Each API waits in turn in the same run (alternating, pooled "
        "over the rounds; *per round*: the median, lowest and highest of the rounds' p50 ratios, the two APIs of a "
        "round having run back to back). Rust: examples/async_handoff.rs, `recv_async` on a current-thread tokio runtime "
        "vs the blocking `recv`; Python: bindings/python/benches/async_handoff.py, `await consumer.arecv()` on "
        "asyncio vs `consumer.recv()`. The event loops' own cost, measured the same way in each round: an 8-byte "
        "stamp through a Unix socket (tokio: a blocking `read` vs `readable().await` + `try_read`) and a pipe "
        "(asyncio: a blocking `os.read` vs the same read awaited the way `arecv` waits, `add_reader` and "
        "`asyncio.wait_for` per wait).",
        "",
        "| consumer | payload | blocking p50 | p99 | event loop p50 | p99 | p50 ratio | p99 ratio | p50 ratio per round |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for label, data, blocking, looped in (
        ("Rust: tokio `recv_async` vs `recv`", rust, "recv", "recv_async"),
        ("Python: asyncio `arecv` vs `recv`", python, "recv", "arecv"),
    ):
        if not data:
            continue
        rows = {(r["size"], r["api"]): r for r in data["rows"]}
        for size in [r["size"] for r in data["rows"] if r["api"] == blocking]:
            b, a = rows.get((size, blocking)), rows.get((size, looped))
            if not b or not a:
                continue
            per = sorted(x / max(y, 1) for x, y in zip(a.get("round_p50_ns", []), b.get("round_p50_ns", [])))
            per_round = f"{per[len(per) // 2]:.2f} × ({per[0]:.2f}–{per[-1]:.2f})" if per else ""
            md.append(
                f"| {label} | {size_name(size) if isinstance(size, int) else BASELINES[size]} | {ns(b['p50_ns'])} | {ns(b['p99_ns'])} "
                f"| {ns(a['p50_ns'])} | {ns(a['p99_ns'])} | {a['p50_ns'] / b['p50_ns']:.2f} × "
                f"| {a['p99_ns'] / b['p99_ns']:.2f} × | {per_round} |"
            )
    return md + [""]


def criterion_results() -> list[tuple[str, float]]:
    out = []
    for bench in sorted((ROOT / "target" / "criterion").glob("**/new/benchmark.json")):
        meta = json.loads(bench.read_text())
        est = json.loads((bench.parent / "estimates.json").read_text())
        out.append((meta["full_id"], est["median"]["point_estimate"]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("results", type=pathlib.Path)
    parser.add_argument("--measure-seconds", type=int, default=0)
    args = parser.parse_args()
    res = args.results
    machine = json.loads((res / "machine.json").read_text())
    ipc = Ipc(json.loads((res / "ipc.json").read_text()))
    gst_lines = [json.loads(line) for line in (res / "gst.jsonl").read_text().splitlines() if line.strip()]
    g = gst_summary(gst_lines)
    py = python_results((res / "python.txt").read_text())
    crit = criterion_results()

    plot_latency(ipc, BENCHES / "latency_vs_payload.png")
    plot_frames(g, BENCHES / "frames_fps.png")

    small, big = ipc.payloads[0], 8 << 20
    md = [
        "# Benchmarks",
        "",
        "Regenerated by `bash benches/run.sh" + (" --quick`" if machine["quick"] else "`")
        + " (this file, the PNGs beside it); do not edit by hand. Noisy machine: compare rows of the same run.",
        "",
        f"- **Run**: {'quick (`--quick`)' if machine['quick'] else 'full'}, {machine['date']}, commit {machine['commit']}"
        + (f", {args.measure_seconds} s of measuring" if args.measure_seconds else ""),
        f"- **Machine**: {machine['cpu_model']}, {machine['cores']} cores (vCPUs), Linux {machine['kernel']}, "
        f"{machine['os']}; load average before the run {machine['load_before']} (the machine is shared)",
        "",
        "## Goals",
        "",
        "| goal | measured | verdict |",
        "|---|---|---|",
    ]

    def ratio(a, b):
        return a / b if a is not None and b else None

    for name in SHMPOOL_1:
        r = ratio(ipc.p50(name, big), ipc.p50(name, small))
        md.append(f"| {LABELS[name]}: hand-off p50 at 8 MiB ≤ 1.2 × at 64 B | {r:.2f} × | {verdict(r <= 1.2)} |")
    grows = [(n, ratio(ipc.p50(n, big), ipc.p50(n, small))) for n in COPYING if ipc.row(n, big)]
    md.append(
        "| every copying baseline grows with the payload (8 MiB / 64 B) | "
        + ", ".join(f"{n} {r:.0f} ×" for n, r in grows)
        + f" | {verdict(all(r > 1.2 for _, r in grows))} |"
    )
    if ipc.row("iceoryx2-poll", small):
        per = [(p, ipc.p50("shmpool-spin", p), ipc.p50("iceoryx2-poll", p)) for p in ipc.payloads]
        cells = ", ".join(f"{size_name(p)} {ns(a)} vs {ns(b)}" for p, a, b in per)
        md.append(
            f"| shmpool spin p50 < iceoryx2 busy-poll p50 | {cells} | {verdict(all(a < b for _, a, b in per))} |"
        )
    else:
        md.append("| shmpool spin p50 < iceoryx2 busy-poll p50 | iceoryx2 rows missing (build without the feature) | n/a |")
    per = [(p, ratio(ipc.p50("shmpool-blocking", p), ipc.p50("futex-pingpong", p))) for p in ipc.payloads]
    md.append(
        "| shmpool blocking p50 ≤ 1.1 × raw futex ping-pong (64 B: both hand over a message and nothing else) | "
        + ", ".join(f"{size_name(p)} {r:.2f} ×" for p, r in per)
        + f" | 64 B: {verdict(per[0][1] <= 1.1)} |"
    )
    p2, s2 = g[("shmpool", 2)], g[("shmsink", 2)]
    fr = ratio(p2["median"], s2["median"])
    md.append(
        f"| 1080p, 1 producer → 2 consumers: ≥ 2 × shmsink/shmsrc fps | {p2['median']:.0f} vs {s2['median']:.0f} fps "
        f"= {fr:.2f} × | {verdict(fr is not None and fr >= 2)} |"
    )
    md.append(
        f"| no stall in {p2['runs']} repeated runs (2 consumers) | shmpool: {p2['stalls']} stalls of {p2['runs']}; "
        f"shmsink: {s2['stalls']} of {s2['runs']} | {verdict(p2['stalls'] == 0)} |"
    )
    farm_file = res / "farm.txt"
    farm = farm_medians(farm_file.read_text()) if farm_file.exists() else {}
    if farm:
        fr = farm_ratios(farm)
        md.append(
            f"| worker farm, one host: shared memory ≥ 10 × the pyzmq Paranoid Pirate broker's events/s (medians) | "
            f"{min(fr):.1f}–{max(fr):.1f} × | {verdict(min(fr) >= 10)} |"
        )
    if py:
        q, s = py["mp.Queue"], py["shmpool (in place)"]
        lat_x = q["latency"]["p50_us"] / s["latency"]["p50_us"]
        fps_x = s["throughput"]["fps"] / q["throughput"]["fps"]
        md.append(
            f"| Python 8 MiB handoff ≥ 50 × faster than multiprocessing.Queue | latency p50 {lat_x:.0f} ×, "
            f"frames/s {fps_x:.0f} × | {verdict(lat_x >= 50 and fps_x >= 50)} |"
        )
    md += [
        "",
        "The analysis of the goals (where the time goes) is in the last section.",
        "",
        "## Two processes: latency, throughput, CPU",
        "",
        "![latency and throughput vs payload](latency_vs_payload.png)",
        "",
        "`shmpool bench --compare --rounds 3`: every row measured three times, spread over the run, keeping the "
        "round with the median hand-off p50 (the machine is shared: one slot of time can be unlucky); "
        "in brackets after it, the lowest and highest round's p50, the spread between rounds. "
        "The parent process sends, child processes receive, each pinned to its own CPU "
        "(rows with two consumers: three processes on two CPUs, not pinned). **Hand-off latency**: one message in "
        "flight; the receiver's CLOCK_MONOTONIC when its receive call returned with the whole message readable, minus "
        "the sender's just before its send call (after the sender wrote the payload into its buffer, the slot or the "
        "loaned sample); the receiver then acknowledges over the same transport. Copying transports have copied the "
        "whole payload by then; zero-copy ones hand over a reference. **Read-all**: until the receiver has also read "
        "an 8-byte stamp on every 4 KiB page (a cache miss per page for big messages, any transport). **msgs/s, GB/s**: "
        "streaming without acknowledgements (broadcast: the slower consumer's rate; work queue: both consumers' sum). "
        "**CPU/msg**: user + system time (getrusage) of all the row's processes divided by the messages: with one "
        "message in flight (waiting included: what spinning burns) and while streaming. shmpool spin: 1 ms of spinning "
        "before sleeping on both sides; iceoryx2 busy-poll spins without limit.",
        "",
    ]
    md += ipc_tables(ipc)
    pc = ipc.data.get("path_costs")
    if pc:
        md += [
            f"Library path, one thread (median of {pc['iterations']} messages): acquire {pc['acquire_ns']} ns + publish "
            f"{pc['publish_ns']} ns + recv {pc['recv_ns']} ns + release {pc['release_ns']} ns = {pc['total_ns']} ns.",
            "",
        ]
    md += [
        "## 1080p RGB frames through GStreamer",
        "",
        "![frames per second](frames_fps.png)",
        "",
        "One producer, `videotestsrc pattern=black ! video/x-raw,format=RGB,width=1920,height=1080` (a cheap source, so "
        "the transport sets the pace; its rate alone is the dashed line). shmpool: examples/gstreamer/gst_to_pool.cpp "
        "(videotestsrc renders into pool slots) → examples/gstreamer/pool_to_gst.cpp per consumer (appsrc ! queue ! "
        "videoconvert ! fakesink, slots wrapped without copy). GStreamer: examples/gstreamer/shmsink_bench.cpp "
        "(`shmsink`, 64 MiB area) → `gst-launch-1.0 shmsrc ! fakesink` per consumer. Timed from the moment every "
        "consumer is connected to end-of-stream; a run with no end-of-stream within 20 s is a stall.",
        "",
        "| system | consumers | median fps | min | max | runs | stalls |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for (system, consumers), s in ((k, v) for k, v in g.items() if k != "source"):
        md.append(
            f"| {'shmpool' if system == 'shmpool' else 'shmsink/shmsrc'} | {consumers} | {s['median']:.0f} | "
            f"{s['min']:.0f} | {s['max']:.0f} | {s['runs']} | {s['stalls']} |"
        )
    md += ["", f"Source alone (`videotestsrc ! fakesink`, same timing, every repetition): median {g['source']:.0f} fps.", ""]
    md += elements_section(res)
    if py:
        md += [
            "## Python: 8 MiB ndarray handoff",
            "",
            "bindings/python/benches/handoff.py, a Python producer process to a Python consumer process "
            "(shape 1024×2048×4 uint8). *In place*: the producer fills the slot; *copy in*: np.copyto of a ready "
            "array into the slot; mp.Queue pickles through a pipe; shared_memory+names: a new segment per frame, "
            "its name through a Queue.",
            "",
            "| transport | latency p50 | p99 | frames/s | latency vs Queue | fps vs Queue |",
            "|---|--:|--:|--:|--:|--:|",
        ]
        q = py["mp.Queue"]
        for kind, r in py.items():
            lat, thr = r["latency"], r["throughput"]
            md.append(
                f"| {kind} | {ns(lat['p50_us'] * 1e3)} | {ns(lat['p99_us'] * 1e3)} | {thr['fps']:.0f} "
                f"| {q['latency']['p50_us'] / lat['p50_us']:.1f} × | {thr['fps'] / q['throughput']['fps']:.1f} × |"
            )
        md.append("")
    nb = res / "nerfbaselines.json"
    if nb.exists():
        md += nerfbaselines_table(json.loads(nb.read_text()))
    loaded = [json.loads(f.read_text()) if f.exists() else None for f in (res / "async_rust.json", res / "async_python.json")]
    md += event_loop_section(*loaded)
    store = res / "store.json"
    if store.exists():
        md += store_table(json.loads(store.read_text()))
    if farm:
        md += farm_table(farm)
    if crit:
        md += [
            "## In-process micro-benchmarks (criterion, benches/exchange.rs)",
            "",
            "One thread, one pool, no waiting: what the library itself costs per call (median).",
            "",
            "| benchmark | median |",
            "|---|--:|",
        ]
        md += [f"| `{name}` | {ns(v) if v >= 1 else f'{v:.2f} ns'} |" for name, v in crit]
        md.append("")
    analysis = BENCHES / "ANALYSIS.md"
    md += ["## Analysis", ""]
    md.append(analysis.read_text().strip() if analysis.exists() else "(benches/ANALYSIS.md is missing)")
    md.append("")
    (BENCHES / "RESULTS.md").write_text("\n".join(md))
    print(f"wrote {BENCHES / 'RESULTS.md'}, latency_vs_payload.png, frames_fps.png")


if __name__ == "__main__":
    main()
