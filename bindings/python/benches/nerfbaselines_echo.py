"""NerfBaselines' own benchmark message through NerfBaselines' transport and shmpool.rpc, in one run.

    .venv/bin/python bindings/python/benches/nerfbaselines_echo.py --nerfbaselines-python NB_VENV/bin/python
        [--rounds N] [--json FILE]

The message is a rendered frame, ``{"color": 1920x1080x3 float32, "depth": 1920x1080x1 float32}``
(33.2 MB), echoed by a worker process (``copy:copy``: a new dict holding the arrays it received).
Rows, p50 and best of the round trip:
  nerfbaselines          pip ``nerfbaselines`` (its RemoteProcessRPCBackend: worker process, a Unix
                         socket, its shared memory), run by the interpreter of a separate virtual
                         environment (benches/run.sh makes it; never a test dependency)
  nerfbaselines no shm   the same with ``NERFBASELINES_PROTOCOL=pipe-shm0`` (pickle 5 on the socket)
  nerfbaselines tcp ...  ``NERFBASELINES_PROTOCOL=tcp-shm0`` (pickle 5 on loopback TCP)
  shmpool tcp, unix      pickled out-of-band buffers on the socket
  shmpool shm copied in  ordinary arrays, copied once into pool slots (the pools grow to fit)
  shmpool shm in place   arrays allocated in pool slots (``Worker.empty``), sent without a copy
then the in-place p50 of single arrays from 1 MiB to 64 MiB (flat: the pools grow, nothing spills).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

SHAPES = {"color": (1080, 1920, 3), "depth": (1080, 1920, 1)}
WARMUP = 3
FLAT_SIZES = [1 << 20, 4 << 20, 16 << 20, 64 << 20]


def message(np):
    rng = np.random.default_rng(0)
    return {k: rng.random(shape, dtype=np.float32) for k, shape in SHAPES.items()}


def timed(rounds, one_round):
    times = []
    for i in range(rounds + WARMUP):
        elapsed = one_round(i)
        if i >= WARMUP:
            times.append(elapsed)
    return times


def nerfbaselines_rounds(rounds):
    """Runs inside the NerfBaselines environment: prints the round-trip times as JSON."""
    import numpy as np
    from nerfbaselines.backends._rpc import RemoteProcessRPCBackend

    msg = message(np)

    with RemoteProcessRPCBackend(python_path=sys.executable) as backend:

        def one(i):
            t = time.perf_counter()
            back = backend.static_call("copy:copy", msg)
            elapsed = time.perf_counter() - t
            assert back["color"].shape == SHAPES["color"] and back["depth"][0, 0, 0] == msg["depth"][0, 0, 0]
            return elapsed

        times = timed(rounds, one)
    json.dump(times, sys.stdout)


def run_nerfbaselines(python, rounds, protocol):
    env = dict(os.environ)
    # Its worker is started as `python -c ...`: the separate environment's interpreter first on PATH.
    env["PATH"] = os.path.dirname(python) + os.pathsep + env.get("PATH", "")
    env.pop("PYTHONPATH", None)
    if protocol:
        env["NERFBASELINES_PROTOCOL"] = protocol
    out = subprocess.run(
        [python, os.path.abspath(__file__), "--inside-nerfbaselines", "--rounds", str(rounds)],
        env=env,
        check=True,
        stdout=subprocess.PIPE,
        timeout=600,
    )
    return json.loads(out.stdout)


def shmpool_rows(rounds):
    import numpy as np

    from shmpool import rpc

    msg = message(np)
    rows = {}
    for name, protocol, in_place in [
        ("shmpool tcp", "tcp", False),
        ("shmpool unix", "unix", False),
        ("shmpool shm copied in", "tcp,shm", False),
        ("shmpool shm in place", "tcp,shm", True),
    ]:
        with rpc.start_worker(protocol=protocol) as worker:

            def one(i):
                t = time.perf_counter()
                if in_place:
                    sent = {k: worker.empty(a.shape, a.dtype) for k, a in msg.items()}
                    sent["depth"][0, 0, 0] = i  # the renderer writes the slots in place
                else:
                    sent = msg
                back = worker.call("copy:copy", sent)
                elapsed = time.perf_counter() - t
                assert back["color"].shape == SHAPES["color"] and back["depth"][0, 0, 0] == sent["depth"][0, 0, 0]
                assert rpc.in_pool(back["color"]) == (protocol == "tcp,shm")
                return elapsed

            rows[name] = timed(rounds, one)
            stats = worker.transport_stats()
            assert stats["spilled_buffers"] == 0, stats
    with rpc.start_worker(protocol="tcp,shm") as worker:
        for n in FLAT_SIZES:

            def one(i, n=n):
                t = time.perf_counter()
                sent = {"a": worker.empty(n // 4, np.float32)}  # copy:copy of a dict: no array copy
                sent["a"][0] = i
                back = worker.call("copy:copy", sent)
                elapsed = time.perf_counter() - t
                assert back["a"][0] == i and rpc.in_pool(back["a"])
                return elapsed

            rows[f"in place {n >> 20} MiB"] = timed(rounds, one)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--nerfbaselines-python", help="python of the environment with nerfbaselines")
    parser.add_argument("--json", help="write {row: [seconds...]} here")
    parser.add_argument("--inside-nerfbaselines", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside_nerfbaselines:
        nerfbaselines_rounds(args.rounds)
        return 0
    rows = {}
    if args.nerfbaselines_python:
        rows["nerfbaselines"] = run_nerfbaselines(args.nerfbaselines_python, args.rounds, None)
        rows["nerfbaselines no shm"] = run_nerfbaselines(args.nerfbaselines_python, args.rounds, "pipe-shm0")
        rows["nerfbaselines tcp no shm"] = run_nerfbaselines(args.nerfbaselines_python, args.rounds, "tcp-shm0")
    rows.update(shmpool_rows(args.rounds))
    p50 = {name: statistics.median(t) for name, t in rows.items()}
    base = p50.get("nerfbaselines")
    print(f"{'transport (33.2 MB frame echo)':<32}{'p50':>11}{'best':>11}{'vs nerfbaselines':>18}")
    for name, times in rows.items():
        ratio = f"{base / p50[name]:>16.1f}x" if base and not name.startswith("in place") else ""
        print(f"{name:<32}{p50[name] * 1e3:>8.2f} ms{min(times) * 1e3:>8.2f} ms{ratio}")
    flat = [p50[f"in place {n >> 20} MiB"] for n in FLAT_SIZES]
    print(f"in place p50, 64 MiB / 1 MiB: {flat[-1] / flat[0]:.2f}x (max/min over sizes: {max(flat) / min(flat):.2f}x)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
