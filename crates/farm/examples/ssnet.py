"""An SSNet-style farm in Python with shmpool.farm: a client sends events of 3 planes (name,
metadata string, (1, 1, 512, 512) float32 array per plane) to service "ssnet"; N worker processes
each return one plane (here: the mean of the three); the client writes the results to a .npz file.

    shmpool-broker --bind tcp://127.0.0.1:5555 &
    python3 ssnet.py workers tcp://127.0.0.1:5555 4 &        # a farm of 4 worker processes
    python3 ssnet.py client tcp://127.0.0.1:5555 100 out.npz

Workers on the broker's host read the planes in place in the client's shared memory; workers on
other hosts (same command, broker address reachable) get the bytes.
"""

import json
import multiprocessing
import signal
import sys

import numpy as np

from shmpool.farm import Client, Worker


def serve(endpoint):
    worker = Worker(endpoint, "ssnet")
    for request in worker:
        parts = request.parts  # per plane: name, meta, array (read-only view, valid until reply)
        planes = parts[2::3]
        result = np.mean(np.stack(planes), axis=0).astype(np.float32)
        request.reply([b"mean", result])


def workers(endpoint, n):
    # SIGTERM/Ctrl-C end the farm: the workers are daemons, stopped when this process exits.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    procs = [multiprocessing.Process(target=serve, args=(endpoint,), daemon=True) for _ in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()


def client(endpoint, events, out):
    client = Client(endpoint, timeout=2.5, attempts=3)
    results = {}
    rng = np.random.default_rng(0)
    for event in range(events):
        parts = []
        for plane in range(3):
            # Made in place: in a slot of the client's pool when the broker is co-located.
            image = client.array("float32", (1, 1, 512, 512))
            rng.random(out=image.reshape(512, 512), dtype=np.float32)
            parts += [f"event{event}-plane{plane}", json.dumps({"event": event, "plane": plane}), image]
        name, result = client.request("ssnet", parts)
        results[f"event{event}"] = result.copy()
    np.savez(out, **results)
    print(json.dumps({"events": events, "written": out, **client.stats()}))


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "workers":
        workers(sys.argv[2], int(sys.argv[3]))
    elif mode == "client":
        client(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        raise SystemExit(__doc__)
