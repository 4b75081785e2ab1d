"""Shared fixtures: every pool lives in a private temporary directory, child processes are
waited on with deadlines, and nothing may be left behind in the directory or in /dev/shm."""

from __future__ import annotations

import gc
import os
import selectors
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, List, Optional

import pytest

import shmpool

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
PEER = HERE / "peer.py"


def _shm_pools() -> set:
    """Pool files (and half-created ones) in the default directory."""
    try:
        return {n for n in os.listdir("/dev/shm") if n.startswith(("shmpool.", ".shmpool."))}
    except FileNotFoundError:
        return set()


@pytest.fixture(scope="session", autouse=True)
def nothing_left_in_dev_shm() -> Iterator[None]:
    before = _shm_pools()
    yield
    gc.collect()
    left = _shm_pools() - before
    assert not left, f"left in /dev/shm: {sorted(left)}"


@pytest.fixture(autouse=True)
def pool_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private directory for this test's pools, also $SHMPOOL_DIR (for children, Rust, and any
    pool created without directory=), so no test touches /dev/shm."""
    d = tmp_path / "pools"
    d.mkdir()
    monkeypatch.setenv("SHMPOOL_DIR", str(d))
    yield d
    gc.collect()
    left = sorted(p.name for p in d.iterdir())
    assert not left, f"pool files left behind: {left}"


@pytest.fixture
def make_pool(pool_dir: Path) -> Iterator:
    """make_pool(name, **kwargs) creates a pool in pool_dir; all are closed at teardown."""
    pools: List[shmpool.Pool] = []

    def make(name: str = "test", **kwargs) -> shmpool.Pool:
        kwargs.setdefault("slots", 4)
        kwargs.setdefault("slot_size", 4096)
        pool = shmpool.Pool.create(name, directory=pool_dir, **kwargs)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.close()


class Child:
    """A child process whose stdout lines are read with deadlines."""

    def __init__(self, argv: List[str], env: Optional[dict] = None) -> None:
        self.argv = argv
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        self._sel = selectors.DefaultSelector()
        assert self.proc.stdout is not None
        self._sel.register(self.proc.stdout, selectors.EVENT_READ)
        self._buf = b""

    def readline(self, timeout: float = 20.0) -> str:
        """The next stdout line; fails the test at the deadline or if the child ends first."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                pytest.fail(f"no line from {self.argv} within {timeout}s; stderr: {self.stderr()}")
            if self._sel.select(remaining):
                assert self.proc.stdout is not None
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    self.proc.wait(timeout=10)
                    pytest.fail(
                        f"{self.argv} exited ({self.proc.returncode}) before a line; stderr: {self.stderr()}"
                    )
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode()

    def expect(self, text: str, timeout: float = 20.0) -> str:
        line = self.readline(timeout)
        assert line.startswith(text), f"expected {text!r}, got {line!r}; stderr: {self.stderr()}"
        return line

    def wait(self, timeout: float = 30.0) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"{self.argv} did not exit within {timeout}s; stderr: {self.stderr()}")

    def stderr(self) -> str:
        if self.proc.poll() is None or self.proc.stderr is None:
            return "(running)"
        return self.proc.stderr.read().decode(errors="replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def close(self) -> None:
        self.kill()
        self._sel.close()
        for f in (self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()


@pytest.fixture
def spawn() -> Iterator:
    """spawn(*args) starts `python peer.py *args` (or spawn(argv=[...]) any program)."""
    children: List[Child] = []

    def start(*args: str, argv: Optional[List[str]] = None) -> Child:
        child = Child(argv or [sys.executable, str(PEER), *args], env=dict(os.environ))
        children.append(child)
        return child

    yield start
    for child in children:
        child.close()


@pytest.fixture(scope="session")
def rust_peer() -> str:
    """The Rust peer program (examples/py_peer.rs): $SHMPOOL_PY_PEER, else built with cargo."""
    path = os.environ.get("SHMPOOL_PY_PEER")
    if not path:
        subprocess.run(
            ["cargo", "build", "--quiet", "--example", "py_peer"], cwd=REPO, check=True, timeout=900
        )
        path = str(REPO / "target" / "debug" / "examples" / "py_peer")
    assert os.access(path, os.X_OK), f"no Rust peer at {path}"
    return path


def wait_for(condition, timeout: float = 10.0, what: str = "condition") -> None:
    """Polls `condition()` until true; fails the test at the deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.005)
