"""A plain 7/MDP (MDP/0.1) client and worker written against the spec with pyzmq only (not with
shmpool), for the interoperability test (interop.rs).

    python3 mdp_plain.py worker ENDPOINT SERVICE      # replies b"py:" + each body frame
    python3 mdp_plain.py client ENDPOINT SERVICE N    # N requests, checks the echo, prints "ok N"
"""
import sys
import time

import zmq

CLIENT, WORKER = b"MDPC01", b"MDPW01"
READY, REQUEST, REPLY, HEARTBEAT, DISCONNECT = b"\x01", b"\x02", b"\x03", b"\x04", b"\x05"
HEARTBEAT_S = 1.0


def worker(endpoint, service):
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(endpoint)
    sock.send_multipart([b"", WORKER, READY, service.encode()])
    print("serving", flush=True)
    next_beat = time.monotonic() + HEARTBEAT_S
    deadline = time.monotonic() + 120  # bounded even if the test forgets to kill it
    while time.monotonic() < deadline:
        if sock.poll(100):
            frames = sock.recv_multipart()
            assert frames[0] == b"" and frames[1] == WORKER, frames
            command = frames[2]
            if command == REQUEST:
                client, empty, body = frames[3], frames[4], frames[5:]
                assert empty == b""
                sock.send_multipart([b"", WORKER, REPLY, client, b""] + [b"py:" + f for f in body])
            elif command == DISCONNECT:
                return
        if time.monotonic() >= next_beat:
            sock.send_multipart([b"", WORKER, HEARTBEAT])
            next_beat = time.monotonic() + HEARTBEAT_S


def request(ctx, endpoint, service, body):
    sock = ctx.socket(zmq.REQ)  # REQ adds the empty delimiter frame, as the spec says
    sock.linger = 0
    sock.connect(endpoint)
    sock.send_multipart([CLIENT, service.encode()] + body)
    if not sock.poll(5000):
        raise SystemExit(f"no reply from {service}")
    frames = sock.recv_multipart()
    sock.close()
    assert frames[0] == CLIENT and frames[1] == service.encode(), frames
    return frames[2:]


def client(endpoint, service, n):
    ctx = zmq.Context()
    assert request(ctx, endpoint, "mmi.service", [service.encode()]) == [b"200"]
    assert request(ctx, endpoint, "mmi.service", [b"no-such-service"]) == [b"404"]
    for i in range(n):
        body = [f"plain {i}".encode(), bytes(range(256)) * 20]
        reply = request(ctx, endpoint, service, body)
        # shmpool-farm-worker answers its tag, then the request's frames.
        assert reply[1:] == body, (i, reply[:1])
    print(f"ok {n}", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "worker":
        worker(sys.argv[2], sys.argv[3])
    else:
        client(sys.argv[2], sys.argv[3], int(sys.argv[4]))
