"""The store of named variables from Python: the API of issue 11, read-only views, errors,
operators (in code and from a JSON pipeline definition) and real processes."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

import shmpool


@pytest.fixture
def store_dir(pool_dir: Path) -> Iterator[Path]:
    """The pool directory; the stores in it are collected at teardown (all handles gone)."""
    yield pool_dir
    gc.collect()
    shmpool.Store.gc(pool_dir)


def run_python(code: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """Runs `code` in a new Python process (with the test's $SHMPOOL_DIR)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout
    )


def test_the_api_of_the_issue(store_dir: Path) -> None:
    store = shmpool.Store.open("job")  # created if missing, in $SHMPOOL_DIR
    store.declare("image", dtype="f32", shape=(-1, 512, 512), capacity=64 << 20)
    with store.write("image") as w:  # a new version, published on exit
        a = w.array(shape=(3, 512, 512))
        a[:] = np.arange(3, dtype=np.float32)[:, None, None]
    v = store.read("image", timeout=5.0)  # latest version; waits for the first
    arr = v.array()
    assert v.version == 1 and arr.shape == (3, 512, 512) and arr.dtype == np.float32
    assert not arr.flags.writeable and arr[2, 7, 9] == 2.0
    assert arr.ctypes.data == v.address  # no copy
    with pytest.raises(TimeoutError):
        store.read("image", newer_than=v.version, timeout=0.05)
    with store.write("image") as w:
        w.array(shape=(1, 512, 512))[:] = 5
    v2 = store.read("image", newer_than=v.version, timeout=5.0)
    assert v2.version == 2 and v2.shape == (1, 512, 512) and float(v2.array().max()) == 5.0
    assert arr[2, 7, 9] == 2.0  # the held version is undisturbed


def test_inputs_are_read_only_everywhere(store_dir: Path) -> None:
    store = shmpool.Store.open("job")
    store.declare("x", dtype="i32", shape=(4,))
    with store.write("x") as w:
        w.array()[:] = [1, 2, 3, 4]
    v = store.read("x")
    with pytest.raises(ValueError):
        v.array()[0] = 9
    assert memoryview(v).readonly
    t = np.from_dlpack(v)
    assert not t.flags.writeable
    with pytest.raises(ValueError):
        v.array().setflags(write=True)  # NumPy cannot make the view writable either
    assert list(store.read("x").array()) == [1, 2, 3, 4]


def test_scalars_strings_and_bad_input(store_dir: Path) -> None:
    store = shmpool.Store.open("job")
    store.declare("n", kind="i64")
    store.declare("label", kind="string", capacity=8)
    store.declare("img", dtype="u8", shape=(-1, 2), capacity=8)
    for name, value in (("n", -7), ("label", "héllo")):
        with store.write(name) as w:
            w.set(value)
        assert store.read(name).value() == value
    with pytest.raises(shmpool.InvalidArgument, match="capacity"):
        with store.write("label") as w:
            w.set("too long for it")
    with pytest.raises(shmpool.InvalidArgument, match="capacity"):
        with store.write("img") as w:
            w.array(shape=(5, 2))
    with pytest.raises(shmpool.InvalidArgument, match="does not match"):
        with store.write("img") as w:
            w.array(shape=(1, 3))
    with pytest.raises(shmpool.InvalidArgument, match="dynamic shape"):
        with store.write("img") as w:
            w.array()
    with pytest.raises(shmpool.InvalidArgument, match="already declared"):
        store.declare("img", dtype="f32", shape=(-1, 2), capacity=8)
    for bad in ("", "a/b", "x" * 64, ".hidden"):
        with pytest.raises(shmpool.InvalidArgument, match="name"):
            store.declare(bad, kind="i64")
    with pytest.raises(shmpool.InvalidArgument):
        store.declare("f", dtype="f32", shape=(0,))
    assert store.read("label").value() == "héllo"  # failed writes published nothing
    assert store.try_read("img") is None


def test_one_writer_per_variable(store_dir: Path) -> None:
    first = shmpool.Store.open("job")
    first.declare("n", kind="i64")
    with first.write("n") as w:
        w.set(1)
    second = shmpool.Store.open("job")
    with pytest.raises(shmpool.WriterBusy, match="already has a writer"):
        second.write("n")
    del first
    gc.collect()
    with second.write("n") as w:
        w.set(2)
    assert second.read("n").version == 2


def test_a_late_joiner_in_another_process_gets_the_latest(store_dir: Path) -> None:
    store = shmpool.Store.open("job")
    store.declare("xs", dtype="u16", shape=(-1,), capacity=64)
    for k in range(1, 6):
        with store.write("xs") as w:
            w.array(shape=(k,))[:] = k
    out = run_python(
        """
        import shmpool
        v = shmpool.Store.open("job").read("xs", timeout=10)
        print(v.version, v.array().tolist())
        """
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "5 [5, 5, 5, 5, 5]"


def test_a_reader_process_sees_whole_versions_in_order(store_dir: Path) -> None:
    store = shmpool.Store.open("job")
    store.declare("v", dtype="u32", shape=(-1,), capacity=4 * 4096)
    reader = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import numpy as np, shmpool
                store = shmpool.Store.open("job")
                last, seen = 0, 0
                while last < 2000:
                    v = store.read("v", newer_than=last, timeout=20)
                    a = v.array()
                    k = int(a[0])
                    assert k == v.version > last, (k, v.version, last)
                    assert a.shape == (1 + k % 4000,) and (a == k).all(), k
                    last, seen = k, seen + 1
                print("seen", seen)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for k in range(1, 2001):
        with store.write("v", timeout=10) as w:
            w.array(shape=(1 + k % 4000,))[:] = k
    out, err = reader.communicate(timeout=60)
    assert reader.returncode == 0, err
    assert out.startswith("seen ")


def test_an_operator_publishes_on_success_and_discards_on_error(store_dir: Path) -> None:
    store = shmpool.Store.open("job")
    source = store.operator("source", outputs={"n": {"kind": "i64"}})
    double = store.operator("double", inputs=["n"], outputs={"n2": {"kind": "i64"}})
    assert (double.inputs, double.outputs) == (["n"], ["n2"])
    with source.run() as r:
        r.outputs["n"].set(21)
    with pytest.raises(RuntimeError, match="boom"):
        with double.run(timeout=1) as r:
            r.outputs["n2"].set(0)
            raise RuntimeError("boom")
    assert store.try_read("n2") is None  # discarded
    with double.run(timeout=1) as r:  # the input was not consumed by the failed run
        r.outputs["n2"].set(2 * r.inputs["n"].value())
    assert store.read("n2").value() == 42
    t = time.monotonic()
    with pytest.raises(TimeoutError, match='input "n"'):
        double.run(timeout=0.2)
    assert time.monotonic() - t >= 0.2


PIPELINE = {
    "variables": {
        "raw": {"dtype": "u32", "shape": [-1], "capacity": 4096},
        "scaled": {"dtype": "f64", "shape": [-1], "capacity": 8192},
        "report": {"kind": "string", "capacity": 64},
    },
    "operators": {
        "loader": {"outputs": ["raw"]},
        "model": {"inputs": ["raw"], "outputs": ["scaled"]},
        "writer": {"inputs": ["scaled"], "outputs": ["report"]},
    },
}

STAGES = {
    "loader": """
        with op.run(timeout=30) as r:
            r.outputs["raw"].array(shape=(100,))[:] = range(100)
    """,
    "model": """
        with op.run(timeout=30) as r:
            x = r.inputs["raw"].array()
            assert not x.flags.writeable
            r.outputs["scaled"].array(shape=x.shape)[:] = x * 0.5
    """,
    "writer": """
        with op.run(timeout=30) as r:
            r.outputs["report"].set("sum=%g" % r.inputs["scaled"].array().sum())
        print(store.read("report").value())
    """,
}


def test_a_pipeline_from_a_json_definition_started_in_reverse_order(store_dir: Path, tmp_path: Path) -> None:
    definition = tmp_path / "pipeline.json"
    definition.write_text(json.dumps(PIPELINE))
    procs = {}
    for stage in ("writer", "model", "loader"):  # each waits for its input
        code = f"import shmpool\nstore = shmpool.Store.open('pipe')\nop = store.pipeline_operator({str(definition)!r}, {stage!r})\n"
        procs[stage] = subprocess.Popen(
            [sys.executable, "-c", code + textwrap.dedent(STAGES[stage])],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    outputs = {stage: p.communicate(timeout=60) for stage, p in procs.items()}
    for stage, p in procs.items():
        assert p.returncode == 0, (stage, outputs[stage][1])
    assert outputs["writer"][0].strip() == "sum=%g" % (sum(range(100)) * 0.5)
    with pytest.raises(shmpool.InvalidArgument, match="no operator"):
        shmpool.Store.open("pipe").pipeline_operator(definition, "nope")


def test_remove_keeps_held_versions(store_dir: Path) -> None:
    store = shmpool.Store.open("job")
    store.declare("x", dtype="i64", shape=(2,))
    with store.write("x") as w:
        w.array()[:] = [1, 2]
    held = store.read("x").array()
    store.remove("x")
    assert store.try_read("x") is None
    store.declare("x", kind="i64")
    for k in range(10):
        with store.write("x") as w:
            w.set(k)
    assert held.tolist() == [1, 2] and store.read("x").value() == 9


def test_list_and_gc(store_dir: Path) -> None:
    store = shmpool.Store.open("job")
    store.declare("n", kind="i64")
    assert [(s["job"], s["in_use"]) for s in shmpool.Store.list(store_dir)] == [("job", True)]
    assert shmpool.Store.gc(store_dir) == []
    assert [v["name"] for v in store.variables()] == ["n"]
    del store
    gc.collect()
    assert shmpool.Store.gc(store_dir) == ["job"]
