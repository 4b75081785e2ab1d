"""The admin commands of the ``shmpool`` command line, for a pip install (no Rust toolchain needed).

    python -m shmpool [--dir DIR] ls [--json]
    python -m shmpool [--dir DIR] inspect NAME [--json]
    python -m shmpool [--dir DIR] gc
    python -m shmpool [--dir DIR] rm NAME

Output and JSON are those of the Rust ``shmpool`` binary's commands of the same names.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Optional, Sequence

from . import Error, Pool


def _ls(directory: Optional[str], as_json: bool) -> None:
    pools = [{**p, "path": str(p["path"])} for p in Pool.list(directory)]
    if as_json:
        print(json.dumps(pools))
        return
    if not pools:
        print("no pools")
    for p in pools:
        state = "in use" if p["in_use"] else "unused"
        print(f"{p['name']:<32} {p['size']:>14} bytes  {state:<7} {p['path']}")


def _report(pool: Pool) -> dict[str, Any]:
    stats = pool.stats()
    return {
        "name": pool.name,
        "path": str(pool.path),
        "slots": stats["slots"],
        "slot_size": pool.slot_size,
        "meta_bytes": pool.meta_bytes,
        "mode": pool.mode,
        "overflow": pool.overflow,
        "lease_ms": round(pool.lease * 1000),
        **{k: stats[k] for k in ("free", "writing", "ready", "reading", "consumers", "producers")},
        **{k: stats[k] for k in ("published", "dropped", "closed")},
        "peers": [
            {k: p[k] for k in ("role", "alive", "pid", "place", "count", "dropped")} for p in stats["peers"]
        ],
    }


def _inspect(directory: Optional[str], name: str, as_json: bool) -> None:
    with Pool.open(name, directory) as pool:
        r = _report(pool)
    if as_json:
        print(json.dumps(r))
        return
    print(f"pool {r['name']} ({r['path']})")
    print(
        f"  {r['slots']} slots x {r['slot_size']} bytes, {r['mode']}, overflow {r['overflow']}, "
        f"{r['meta_bytes']} metadata bytes per slot"
    )
    print(f"  slots: {r['free']} free, {r['writing']} writing, {r['ready']} ready, {r['reading']} reading")
    print(f"  published {r['published']}, dropped {r['dropped']}, closed: {'yes' if r['closed'] else 'no'}")
    print(f"  {r['producers']} producer(s), {r['consumers']} consumer(s)")
    for p in r["peers"]:
        alive = "alive" if p["alive"] else "DEAD"
        print(
            f"    {p['role']:<8} place {p['place']:>2}  pid {p['pid']:>7}  {alive:<5}  "
            f"count {p['count']:>10}  dropped {p['dropped']}"
        )


def _gc(directory: Optional[str]) -> None:
    removed = Pool.gc(directory)
    for name in removed:
        print(f"removed {name}")
    if not removed:
        print("nothing to remove")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shmpool", description="Inspect and clean up shmpool pools.")
    parser.add_argument("--dir", metavar="DIR", help="pool directory (default: $SHMPOOL_DIR, else /dev/shm)")
    commands = parser.add_subparsers(dest="command", required=True)
    ls = commands.add_parser("ls", help="list the pools of the directory")
    ls.add_argument("--json", action="store_true")
    inspect = commands.add_parser("inspect", help="show a pool's configuration, slots and peers")
    inspect.add_argument("name")
    inspect.add_argument("--json", action="store_true")
    commands.add_parser("gc", help="remove pools no live process has open")
    rm = commands.add_parser("rm", help="shut a pool down for its users and remove its name")
    rm.add_argument("name")
    args = parser.parse_args(argv)
    try:
        if args.command == "ls":
            _ls(args.dir, args.json)
        elif args.command == "inspect":
            _inspect(args.dir, args.name, args.json)
        elif args.command == "gc":
            _gc(args.dir)
        else:
            Pool.remove(args.name, args.dir)
            print(f"removed {args.name}")
    except Error as e:
        print(f"shmpool: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
