"""shmpool.farm: clients and workers of a Majordomo (7/MDP) farm broker (``shmpool-broker``).

Messages are lists of parts: ``bytes``/``str`` or NumPy arrays (dtype and shape travel with
them). Between peers on one host, arrays travel through shared memory (only descriptors cross
ZeroMQ); a worker's received arrays are then read-only views of the client's slot, valid until
the request is answered: copy (``a.copy()``) what must outlive the reply. A client's reply
arrays from a co-located worker are read-only views of a slot of the client's reply pool, held
until the array is dropped.

    from shmpool.farm import Client, Worker

    worker = Worker("tcp://127.0.0.1:5555", "ssnet")
    for request in worker:
        name, meta, plane = request.parts[:3]
        request.reply([b"done", plane * 2])

    client = Client("tcp://127.0.0.1:5555", timeout=2.5, attempts=3)
    reply = client.request("ssnet", [b"plane0", b"{}", numpy.zeros((1, 1, 512, 512), "float32")])

    plane = client.array("float32", (1, 1, 512, 512))  # in a slot of the client's pool
    plane[...] = frame                                  # written once, in place,
    reply = client.request("ssnet", [b"plane0", b"{}", plane])  # and sent with no copy
"""

from __future__ import annotations

from ._errors import FarmError
from ._shmpool import FarmClient as Client
from ._shmpool import FarmRequest as Request
from ._shmpool import FarmWorker as Worker

__all__ = ["Client", "Worker", "Request", "FarmError"]
