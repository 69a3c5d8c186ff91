"""Run a :class:`weir.Worker` from the shell::

    python -m weir.worker myapp.workers:worker
    weir-worker --app myapp.workers:worker --nats-url nats://nats:4222

``module:name`` names a :class:`weir.Worker`, or a mapping of agent names to handlers (then the
flags configure the worker). SIGTERM and SIGINT drain it: no new runs, running ones get the
worker's drain grace, the rest end ``failed``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import sys
from typing import Any, List, Mapping, Optional

from ._worker import Worker


def load(spec: str) -> Any:
    """The object ``module:name`` names (``name`` may be dotted)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"expected module:name, got {spec!r}")
    sys.path.insert(0, os.getcwd())
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def parse(argv: Optional[List[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="weir-worker", description="Serve agents from weir's run queues.")
    p.add_argument("app", nargs="?", help="module:name of a weir.Worker or of a mapping of agents to handlers")
    p.add_argument("--app", dest="app_flag", help="the same as the positional argument")
    p.add_argument("--nats-url", default=os.environ.get("WEIR_NATS_URL", "nats://127.0.0.1:4222"))
    p.add_argument("--node-id", default=os.environ.get("WEIR_NODE_ID"))
    p.add_argument("--concurrency", type=int, default=int(os.environ.get("WEIR_CONCURRENCY", "8")))
    p.add_argument("--drain-grace", type=float, default=float(os.environ.get("WEIR_DRAIN_GRACE", "10")))
    p.add_argument("--lease-ttl", type=float, default=float(os.environ.get("WEIR_LEASE_TTL", "10")))
    p.add_argument("--log-level", default=os.environ.get("WEIR_LOG_LEVEL", "INFO"))
    args = p.parse_args(argv)
    args.app = args.app or args.app_flag
    if not args.app:
        p.error("name the worker: module:name")
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    target = load(args.app)
    if isinstance(target, Worker):
        worker = target
    elif isinstance(target, Mapping):
        urls = [u.strip() for u in args.nats_url.split(",") if u.strip()]
        worker = Worker(
            target,
            nats_url=urls,
            node_id=args.node_id,
            concurrency=args.concurrency,
            drain_grace=args.drain_grace,
            lease_ttl=args.lease_ttl,
        )
    else:
        print(f"weir-worker: {args.app} is a {type(target).__name__}, not a weir.Worker or a mapping", file=sys.stderr)
        return 2
    asyncio.run(worker.run(signals=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
