"""The baseline of the farm benchmark: a Paranoid Pirate broker, worker and client written with
pyzmq, sending arrays as frames with copy=False (the SSNetServer way).

    python3 ppp.py broker FRONTEND BACKEND
    python3 ppp.py worker BACKEND TAG
    python3 ppp.py client FRONTEND EVENTS PLANES SIDE WORKERS   # prints one JSON line
"""
import json
import resource
import sys
import time
from collections import OrderedDict

import numpy as np
import zmq

READY, HEARTBEAT = b"\x01", b"\x02"
HEARTBEAT_S, LIVENESS = 1.0, 3


def broker(frontend_ep, backend_ep):
    ctx = zmq.Context()
    frontend, backend = ctx.socket(zmq.ROUTER), ctx.socket(zmq.ROUTER)
    frontend.bind(frontend_ep)
    backend.bind(backend_ep)
    workers = OrderedDict()  # address -> expiry, least recently used first
    poll_workers, poll_both = zmq.Poller(), zmq.Poller()
    poll_workers.register(backend, zmq.POLLIN)
    poll_both.register(backend, zmq.POLLIN)
    poll_both.register(frontend, zmq.POLLIN)
    next_beat = time.monotonic() + HEARTBEAT_S
    print("listening", flush=True)
    while True:
        socks = dict((poll_both if workers else poll_workers).poll(HEARTBEAT_S * 1000))
        if socks.get(backend) == zmq.POLLIN:
            frames = backend.recv_multipart(copy=False)
            address = frames[0].bytes
            workers.pop(address, None)
            workers[address] = time.monotonic() + HEARTBEAT_S * LIVENESS
            if len(frames) == 2 and frames[1].bytes in (READY, HEARTBEAT):
                pass
            else:
                frontend.send_multipart(frames[1:], copy=False)
        if socks.get(frontend) == zmq.POLLIN:
            frames = frontend.recv_multipart(copy=False)
            address, _ = workers.popitem(last=False)
            backend.send_multipart([address] + frames, copy=False)
        now = time.monotonic()
        if now >= next_beat:
            for address in workers:
                backend.send_multipart([address, HEARTBEAT])
            next_beat = now + HEARTBEAT_S
        for address in [a for a, t in workers.items() if t < now]:
            del workers[address]


def worker(backend_ep, tag):
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.connect(backend_ep)
    sock.send(READY)
    print("serving", flush=True)
    next_beat = time.monotonic() + HEARTBEAT_S
    while True:
        if sock.poll(HEARTBEAT_S * 1000):
            frames = sock.recv_multipart(copy=False)
            if len(frames) > 1:
                # [client, "", name, meta, array, ...]: return one plane (the last array), no copy.
                sock.send_multipart(frames[:2] + [tag.encode(), frames[-1]], copy=False)
        if time.monotonic() >= next_beat:
            sock.send(HEARTBEAT)
            next_beat = time.monotonic() + HEARTBEAT_S


def client(frontend_ep, events, planes, side, workers):
    ctx = zmq.Context()
    sock = ctx.socket(zmq.REQ)
    sock.connect(frontend_ep)
    times = []
    time.sleep(0.5 + 0.1 * workers)  # the baseline has no status service; let the workers register
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu_before = usage.ru_utime + usage.ru_stime
    for event in range(events):
        frames = []
        for plane in range(planes):
            array = np.arange(side * side, dtype=np.float32).reshape(1, 1, side, side) + event
            frames += [f"event{event}-plane{plane}".encode(), json.dumps({"event": event}).encode(), array]
        sent = time.monotonic()
        sock.send_multipart(frames, copy=False)
        reply = sock.recv_multipart(copy=False)
        times.append(time.monotonic() - sent)
        back = np.frombuffer(reply[1].buffer, dtype=np.float32)
        assert back.size == side * side and back[0] == event, "wrong reply"
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime - cpu_before
    elapsed = sum(times)  # events/s of one client: 1 / mean round trip (building events is not timed)
    times.sort()
    print(json.dumps({
        "events": events, "elapsed_s": elapsed, "events_per_s": events / elapsed,
        "p50_us": int(times[len(times) // 2] * 1e6), "p99_us": int(times[min(len(times) - 1, len(times) * 99 // 100)] * 1e6), "cpu_s": cpu,
    }), flush=True)


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "broker":
        broker(*args)
    elif mode == "worker":
        worker(*args)
    else:
        client(args[0], int(args[1]), int(args[2]), int(args[3]), int(args[4]))
