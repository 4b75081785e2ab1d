"""What a new user trips on first: starting the consumer before the producer, text metadata,
signatures, views outliving a `with` block, DLPack copies, counters after close, the admin
commands of a pip install, one vocabulary (with the old names deprecated, not broken)."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

import shmpool
from conftest import wait_for


def test_a_consumer_started_first_waits_for_the_pool(spawn, pool_dir):
    child = spawn("consume_first", "late")
    child.expect("waiting")
    time.sleep(0.2)  # the child is inside Pool.open(timeout=20) now, polling for the file
    with shmpool.Pool.create("late", slots=2, slot_size=4096, directory=pool_dir) as pool:
        producer = pool.producer()
        child.expect("opened")
        wait_for(lambda: pool.stats()["consumers"] == 1, what="the child's consumer")
        wb = producer.acquire(timeout=5)
        memoryview(wb)[:5] = b"hello"
        wb.publish(5)
        assert child.readline() == "hello"
        assert child.wait() == 0


def test_open_timeout_raises_pool_not_found_when_time_is_up(pool_dir):
    start = time.monotonic()
    with pytest.raises(shmpool.PoolNotFound):
        shmpool.Pool.open("never", directory=pool_dir, timeout=0.2)
    assert 0.2 <= time.monotonic() - start < 5
    with pytest.raises(shmpool.PoolNotFound):
        shmpool.Pool.open("never", directory=pool_dir)  # default: no wait


def test_user_meta_takes_str_or_bytes(make_pool):
    pool = make_pool()
    consumer, producer = pool.consumer(), pool.producer()
    wb = producer.acquire(timeout=1)
    wb.user_meta = "video/x-raw,format=RGB,width=1920 ✓"
    wb.publish(0)
    assert consumer.recv(timeout=1).user_meta.decode() == "video/x-raw,format=RGB,width=1920 ✓"
    wb = producer.acquire(timeout=1)
    with pytest.raises(TypeError, match="bytes or str"):
        wb.user_meta = 42
    wb.discard()


def test_signatures_show_the_real_defaults():
    sig = inspect.signature(shmpool.Pool.create)
    assert sig.parameters["slot_size"].default == 1 << 20
    assert sig.parameters["permissions"].default == 0o600
    assert "Ellipsis" not in str(sig) and "..." not in str(sig)


def test_leaving_with_while_a_view_lives_warns_and_keeps_the_slot(make_pool):
    pool = make_pool()
    consumer, producer = pool.consumer(), pool.producer()
    producer.acquire(timeout=1).publish(8)
    with pytest.warns(ResourceWarning, match="view"):
        with consumer.recv(timeout=1) as buf:
            view = memoryview(buf)
    assert pool.stats()["reading"] == 1  # the view keeps it, as the warning said
    view.release()
    del buf
    wait_for(lambda: pool.stats()["reading"] == 0, what="the slot back")


def test_dlpack_copy_true_makes_a_copy(make_pool):
    pool = make_pool()
    consumer, producer = pool.consumer(), pool.producer()
    wb = producer.acquire(timeout=1)
    wb.array(np.float32, (4, 8))[...] = np.arange(32, dtype=np.float32).reshape(4, 8)
    wb.publish()
    with consumer.recv(timeout=1) as buf:
        copy = np.from_dlpack(buf, copy=True)
        view = np.from_dlpack(buf)
        assert not np.shares_memory(copy, view)
        assert np.array_equal(copy, view) and copy.shape == (4, 8)
        assert copy.flags.writeable and not view.flags.writeable
        del view
    copy[0, 0] = -1  # the copy outlives the slot, which is back in the pool
    assert pool.stats()["reading"] == 0


def test_counters_stay_readable_after_close(make_pool):
    pool = make_pool(overflow="drop-oldest", slots=2)
    consumer, producer = pool.consumer(), pool.producer()
    for _ in range(5):
        producer.acquire(timeout=1).publish(1)
    consumer.recv(timeout=1).release()
    received, dropped, published = consumer.received, consumer.dropped, producer.published
    assert (received, published) == (1, 5) and dropped > 0
    consumer.close()
    producer.close()
    assert (consumer.received, consumer.dropped, producer.published) == (received, dropped, published)
    pool.close()
    stats = pool.stats()
    assert stats["published"] == 5 and stats["closed"]
    with pytest.raises(shmpool.Closed):
        pool.producer()


def test_close_lets_go_shutdown_ends_the_pool_for_everyone(make_pool, pool_dir):
    creator = make_pool("shared")
    consumer = creator.consumer()
    other = shmpool.Pool.open("shared", directory=pool_dir)
    other.close()  # an opened handle only lets go of itself
    assert not creator.closed
    again = shmpool.Pool.open("shared", directory=pool_dir)
    again.shutdown()  # any handle may end it for everyone
    with pytest.raises(shmpool.Closed):
        consumer.recv(timeout=1)
    assert creator.closed


def test_old_names_still_work_with_a_deprecation_warning(make_pool):
    pool = make_pool()
    consumer, producer = pool.consumer(), pool.producer()
    wb = producer.acquire(timeout=1)
    with pytest.warns(DeprecationWarning, match="user_meta"):
        wb.meta = b"old"
    with pytest.warns(DeprecationWarning, match="slot_index"):
        assert wb.slot == wb.slot_index
    wb.publish(0)
    with pytest.warns(DeprecationWarning, match="is_published"):
        assert wb.published
    buf = consumer.recv(timeout=1)
    with pytest.warns(DeprecationWarning, match="user_meta"):
        assert buf.meta == b"old" == buf.user_meta
    with pytest.warns(DeprecationWarning, match="slot_index"):
        assert buf.slot == buf.slot_index
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert buf.user_meta == b"old" and isinstance(producer.published, int)


def run_admin(pool_dir, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "shmpool", "--dir", str(pool_dir), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_admin_commands_of_a_pip_install(make_pool, pool_dir):
    pool = make_pool("admin")
    consumer = pool.consumer()
    listed = json.loads(run_admin(pool_dir, "ls", "--json").stdout)
    assert [(p["name"], p["in_use"]) for p in listed] == [("admin", True)]
    report = json.loads(run_admin(pool_dir, "inspect", "admin", "--json").stdout)
    assert (report["slots"], report["consumers"], report["mode"]) == (4, 1, "broadcast")
    assert [p["role"] for p in report["peers"]] == ["consumer"]
    assert "1 consumer(s)" in run_admin(pool_dir, "inspect", "admin").stdout
    assert run_admin(pool_dir, "rm", "admin").stdout.strip() == "removed admin"
    with pytest.raises(shmpool.Closed):
        consumer.recv(timeout=1)
    missing = run_admin(pool_dir, "inspect", "admin")
    assert missing.returncode == 1 and "not found" in missing.stderr
    assert run_admin(pool_dir, "gc").stdout.strip() == "nothing to remove"
