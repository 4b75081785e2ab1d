"""Functions and classes the rpc tests call in their workers (imported there via PYTHONPATH)."""

from __future__ import annotations

import os
import time

import numpy as np

CLOSED_GENERATORS = []


class CustomBase(BaseException):
    """A BaseException subclass (not an Exception)."""


def echo(*values):
    return values[0] if len(values) == 1 else values


def describe(array):
    """What the worker received: whether it is a view of a pool slot, and a checksum."""
    from shmpool.rpc import in_pool

    return in_pool(array), float(np.asarray(array, dtype=np.float64).sum())


def fail(message):
    raise ValueError(message)


def fail_base():
    raise CustomBase("not an Exception")


def sleep(seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(min(1.0, deadline - time.monotonic()))
    return "slept"


def count(n):
    try:
        for i in range(n):
            yield i
    finally:
        CLOSED_GENERATORS.append(n)


def closed_generators():
    return list(CLOSED_GENERATORS)


def exit_now(status=0):
    os._exit(status)


def pid():
    return os.getpid()


def shm_dir():
    return os.environ.get("SHMPOOL_DIR")


class Counter:
    def __init__(self, start=0):
        self.value = start

    def add(self, n=1):
        self.value += n
        return self.value

    @staticmethod
    def static_pid():
        return os.getpid()

    @classmethod
    def class_name(cls):
        return cls.__name__, os.getpid()


def received_in_pool(array):
    """Whether the worker got `array` as a view of a pool slot (no copy), and its length."""
    from shmpool.rpc import in_pool

    return in_pool(array), len(array)


def fresh(nbytes, value):
    """A new array (not a view of anything received): the worker's own pools must carry it."""
    return np.full(nbytes, value, dtype=np.uint8)
