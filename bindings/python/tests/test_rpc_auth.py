"""The protocol's authentication seen from Python: a worker with the wrong secret is refused on
the host (AuthenticationError) and fails itself with a clear error."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import shmpool
from shmpool import _shmpool

WORKER = "from shmpool import _shmpool\n_shmpool.connect_env()\n"


def run_worker(env_update):
    listener = _shmpool.Listener("tcp")
    env = dict(os.environ)
    env.update(dict(listener.worker_env()))
    env.update(env_update)
    proc = subprocess.Popen([sys.executable, "-c", WORKER], env=env, stderr=subprocess.PIPE, text=True)
    return listener, proc


def test_wrong_secret_is_refused_on_both_sides():
    listener, proc = run_worker({"SHMPOOL_SECRET": "cd" * 32})
    with pytest.raises(shmpool.AuthenticationError, match="does not know the secret"):
        listener.accept(20)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode != 0
    assert "AuthenticationError" in err and "authentication failed" in err


def test_right_secret_is_accepted():
    listener, proc = run_worker({})
    conn = listener.accept(20)
    assert conn.protocol == "tcp"
    proc.communicate(timeout=20)
    assert proc.returncode == 0


@pytest.mark.parametrize(
    "backend,arg,first",
    [
        ("process", None, sys.executable),
        ("docker", "img", "docker"),
        ("podman", "img", "podman"),
        ("apptainer", "a.sif", "apptainer"),
        ("conda", "nerf", "conda"),
        ("namespace", None, "unshare"),
    ],
)
def test_backend_commands_keep_the_secret_off_the_command_line(backend, arg, first):
    secret = "ab" * 32
    argv, env = _shmpool.worker_command(
        backend, [sys.executable, "-m", "shmpool.rpc"], [("SHMPOOL_SECRET", secret)], "/pools", arg
    )
    assert argv[0] == first and argv[-3:] == [sys.executable, "-m", "shmpool.rpc"]
    assert secret not in " ".join(argv)
    assert dict(env)["SHMPOOL_SECRET"] == secret


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(shmpool.InvalidArgument, match="unknown backend"):
        _shmpool.worker_command("vm", ["x"], [], "/pools")
    with pytest.raises(shmpool.InvalidArgument, match="needs an image"):
        _shmpool.worker_command("docker", ["x"], [], "/pools")
