"""Python on either side of the GStreamer elements (bindings/gstreamer): a NumPy consumer of a
pool fed by `shmpoolsink`, and a NumPy producer feeding `shmpoolsrc` through the slot metadata
format of bindings/gstreamer/src/frame_meta.rs. Skipped unless gst-launch-1.0 and a built
libgstshmpool.so (cargo build -p gst-plugin-shmpool) are there."""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

import shmpool

REPO = Path(__file__).resolve().parents[3]
HD = "video/x-raw,format=RGB,width=1920,height=1080"
LIMIT = 60.0


def plugin_dir() -> Path:
    # scripts/test-python.sh builds the plugin and names its directory: then it must be there.
    required = os.environ.get("SHMPOOL_GST_PLUGIN_DIR")
    if required:
        assert (Path(required) / "libgstshmpool.so").exists(), f"no libgstshmpool.so in {required}"
        return Path(required)
    for profile in ("release", "debug"):
        if (REPO / "target" / profile / "libgstshmpool.so").exists():
            return REPO / "target" / profile
    pytest.skip("libgstshmpool.so not built (cargo build -p gst-plugin-shmpool)")


@pytest.fixture
def gst_env(tmp_path: Path) -> dict:
    if shutil.which("gst-launch-1.0") is None:
        pytest.skip("gst-launch-1.0 not installed")
    # Only the plugin on the path, and a private registry.
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "libgstshmpool.so").symlink_to(plugin_dir() / "libgstshmpool.so")
    env = dict(os.environ, GST_PLUGIN_PATH=str(plugins), GST_REGISTRY=str(tmp_path / "registry.bin"))
    env.pop("GST_DEBUG", None)
    return env


class Launch:
    """A gst-launch-1.0 process, killed at the end of the test if still running."""

    def __init__(self, env: dict, *args: str):
        self.proc = subprocess.Popen(
            ["gst-launch-1.0", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

    def finish(self) -> str:
        out, _ = self.proc.communicate(timeout=LIMIT)
        assert self.proc.returncode == 0, out
        return out

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def open_when_there(name: str, directory: Path) -> shmpool.Pool:
    deadline = time.monotonic() + LIMIT
    while True:
        try:
            return shmpool.Pool.open(name, directory=directory)
        except shmpool.PoolNotFound:
            assert time.monotonic() < deadline, f"pool {name} never appeared"
            time.sleep(0.01)


def test_numpy_consumer_of_shmpoolsink_gets_frames_as_height_width_channels(gst_env, pool_dir, tmp_path):
    source = ["videotestsrc", "num-buffers=5", "pattern=smpte100", "!", HD]
    raw = tmp_path / "frames.raw"
    Launch(gst_env, "-q", *source, "!", "filesink", f"location={raw}").finish()
    want = np.fromfile(raw, dtype=np.uint8).reshape(5, 1080, 1920, 3)
    sink = Launch(gst_env, *source, "!", "shmpoolsink", "pool=gst", f"directory={pool_dir}", "wait-for-consumers=1")
    try:
        with open_when_there("gst", pool_dir) as pool, pool.consumer() as consumer:
            for i in range(5):
                buf = consumer.recv(timeout=LIMIT)
                arr = buf.array()
                assert (arr.shape, arr.dtype) == ((1080, 1920, 3), np.uint8)
                assert np.array_equal(arr, want[i]), f"frame {i} differs"
                del arr
                buf.release()
        sink.finish()
    finally:
        sink.kill()


def frame_meta(kind: int, pts: int, duration: int, caps: str) -> bytes:
    """The slot metadata shmpoolsrc reads (bindings/gstreamer/src/frame_meta.rs)."""
    none = 2**64 - 1
    header = b"GSPM" + bytes([1, kind, 0, 0]) + struct.pack("<I", 0)
    header += struct.pack("<QQQQQQ", pts, none, duration, none, none, 1)
    return header + struct.pack("<I", len(caps)) + caps.encode()


def test_numpy_producer_feeds_shmpoolsrc_with_caps_and_timestamps(gst_env, make_pool, pool_dir):
    caps = "video/x-raw, format=(string)GRAY8, width=(int)64, height=(int)48, framerate=(fraction)25/1"
    pool = make_pool("frompy", slots=4, slot_size=64 * 48, meta_bytes=4096)
    src = Launch(
        gst_env, "-v", "shmpoolsrc", "pool=frompy", f"directory={pool_dir}", "timeout=20000000000", "!", "checksumsink"
    )
    try:
        deadline = time.monotonic() + LIMIT
        while pool.stats()["consumers"] < 1:
            assert time.monotonic() < deadline, "shmpoolsrc never attached"
            time.sleep(0.01)
        want = []
        with pool.producer() as producer:
            for i in range(10):
                frame = np.full((48, 64), i * 20, dtype=np.uint8)
                frame[i, :] = 255
                wb = producer.acquire(timeout=LIMIT)
                wb.array(np.uint8, frame.shape)[...] = frame
                wb.user_meta = frame_meta(0, i * 40_000_000, 40_000_000, caps)
                wb.publish()
                want.append(f"0:00:00.{i * 40_000_000:09d} {hashlib.sha1(frame.tobytes()).hexdigest()}")
            eos = producer.acquire(timeout=LIMIT)
            eos.user_meta = frame_meta(1, 2**64 - 1, 2**64 - 1, caps)
            eos.publish(0)
        out = src.finish()
        got = [line for line in out.splitlines() if line.startswith("0:00:")]
        assert got == want
        assert f"checksumsink0.GstPad:sink: caps = {caps}" in out
    finally:
        src.kill()
