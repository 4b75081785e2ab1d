"""The README's producer.py and consumer.py, run as written, under SIGTERM and SIGKILL of the
producer and a restart: consumers never wait forever on a pool whose creator died, and the
restarted producer takes the pool over (or replaces it) instead of raising PoolExists."""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from pathlib import Path

import pytest

import shmpool
from conftest import REPO, wait_for


def readme_script(name: str) -> str:
    """The first ```python block after the README's mention of `name`."""
    text = (REPO / "README.md").read_text()
    start = text.index(f"(`{name}`")
    match = re.search(r"```python\n(.*?)```", text[start:], re.S)
    assert match, f"no code block for {name} in README.md"
    return match.group(1)


@pytest.fixture
def scripts(tmp_path: Path) -> dict:
    paths = {}
    for name in ("producer.py", "consumer.py"):
        path = tmp_path / name
        path.write_text(readme_script(name))
        paths[name] = path
    return paths


def run(spawn, script: Path):
    return spawn(argv=[sys.executable, str(script)])


def creator_alive() -> bool:
    try:
        probe = shmpool.Pool.open("frames")
    except shmpool.Error:
        return False
    try:
        return probe.stats()["creator_alive"]
    finally:
        probe.close()


def start_traffic(spawn, scripts, pool_dir: Path):
    """Producer and consumer running, the consumer stopped after its first frame so the producer
    blocks on a full pool in the middle of its 100 frames."""
    producer = run(spawn, scripts["producer.py"])
    wait_for(lambda: (pool_dir / "shmpool.frames").exists(), what="the producer's pool")
    consumer = run(spawn, scripts["consumer.py"])
    consumer.readline()
    os.kill(consumer.proc.pid, signal.SIGSTOP)
    probe = shmpool.Pool.open("frames")
    wait_for(lambda: probe.stats()["waiters"] >= 1, what="the producer to block on a full pool")
    return producer, consumer, probe


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_restarted_producer_takes_the_pool_over_and_the_consumer_goes_on(spawn, scripts, pool_dir, sig):
    producer, consumer, probe = start_traffic(spawn, scripts, pool_dir)
    os.kill(producer.proc.pid, sig)
    assert producer.wait() == -sig
    wait_for(lambda: probe.stats()["orphaned"], what="the pool to be orphaned")
    assert not probe.stats()["producer_alive"]
    restarted = run(spawn, scripts["producer.py"])  # not PoolExists: it takes the pool over
    wait_for(lambda: probe.stats()["producer_alive"], what="the restarted producer")
    assert not probe.stats()["orphaned"]
    probe.close()
    os.kill(consumer.proc.pid, signal.SIGCONT)
    assert restarted.wait(60) == 0, restarted.stderr()
    assert consumer.wait(60) == 0, consumer.stderr()
    assert consumer.proc.stdout is not None
    lines = 1 + (consumer._buf + consumer.proc.stdout.read()).count(b"\n")
    assert lines >= 100, f"the consumer received {lines} frames"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_consumers_of_a_dead_producer_get_orphaned_then_a_restart_works(spawn, scripts, pool_dir, sig):
    producer, consumer, probe = start_traffic(spawn, scripts, pool_dir)
    probe.close()
    os.kill(producer.proc.pid, sig)
    assert producer.wait() == -sig
    resumed = time.monotonic()
    os.kill(consumer.proc.pid, signal.SIGCONT)
    assert consumer.wait(20) != 0
    assert "Orphaned" in consumer.stderr()
    # It drained what was published, then learnt within the lease (0.5 s) that nobody is left.
    assert time.monotonic() - resumed < 3.0
    late = run(spawn, scripts["consumer.py"])
    assert late.wait(20) != 0 and "Orphaned" in late.stderr(), "a consumer started now does not hang"
    restarted = run(spawn, scripts["producer.py"])  # the stale pool is replaced
    wait_for(creator_alive, what="the restarted pool")
    fresh = run(spawn, scripts["consumer.py"])
    assert restarted.wait(60) == 0, restarted.stderr()
    assert fresh.wait(60) == 0, fresh.stderr()
