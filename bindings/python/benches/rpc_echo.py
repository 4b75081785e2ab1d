"""Round trip of an rpc call echoing a float32 array, per transport (shm vs unix vs tcp).

    .venv/bin/python bindings/python/benches/rpc_echo.py [--rounds N]

Prints the median and best round trip per array size and the tcp/shm ratios. Rows:
  shm (in place)  the host allocates the array in a pool slot (Worker.empty) and writes a stamp;
                  it goes to the worker and comes back without a copy (views of the same slot)
  shm (copy in)   an ordinary array: copied once into a slot; the echo comes back without a copy
  unix, tcp       pickled out-of-band buffers on the socket
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

from shmpool import rpc

SIZES = {"1 MiB": 1 << 20, "8 MiB": 8 << 20}
RUNS = {"shm (in place)": "tcp,shm", "shm (copy in)": "tcp,shm", "unix": "unix", "tcp": "tcp"}


def measure(worker: rpc.Worker, array: np.ndarray, rounds: int, in_place: bool) -> list:
    times = []
    for i in range(rounds + 3):
        t = time.perf_counter()
        if in_place:
            sent = worker.empty(array.shape, array.dtype)
            assert rpc.in_pool(sent), "no free slot"
            sent[0] = i
        else:
            sent = array
        back = worker.call("numpy:asarray", sent)
        elapsed = time.perf_counter() - t
        assert back.shape == array.shape
        del back, sent
        if i >= 3:
            times.append(elapsed)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    arrays = {name: np.random.default_rng(0).random(n // 4, dtype=np.float32) for name, n in SIZES.items()}
    results = {}
    for run, protocol in RUNS.items():
        with rpc.start_worker(protocol=protocol) as worker:
            assert worker.protocol == run.split()[0], (worker.protocol, run)
            for name, array in arrays.items():
                times = measure(worker, array, args.rounds, in_place=run == "shm (in place)")
                results[run, name] = (statistics.median(times), min(times))
    print(f"{'transport':<16}" + "".join(f"{name + ' p50':>14}{name + ' min':>14}" for name in SIZES))
    for run in RUNS:
        row = "".join(f"{results[run, n][0] * 1e3:>11.3f} ms{results[run, n][1] * 1e3:>11.3f} ms" for n in SIZES)
        print(f"{run:<16}{row}")
    for name in SIZES:
        tcp = results["tcp", name][0]
        print(
            f"tcp / shm median, {name}: {tcp / results['shm (in place)', name][0]:.1f}x (in place), "
            f"{tcp / results['shm (copy in)', name][0]:.1f}x (copy in)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
