"""The command line: ``python -m neuroio_nb.sandbox [options]``.

:func:`add_arguments` and :func:`run` let ``neuroio-nb sandbox`` offer the same
options.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from .sandbox import Sandbox


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8765, help="port (0: any free port)")
    parser.add_argument("--sources", type=int, default=500, help="how many sources to generate")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated sources")
    parser.add_argument("--token", default=None, help="API token to accept (default: random)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added per request")
    parser.add_argument("--fault-rate", type=float, default=0.0,
                        help="share of requests that fail (503, 429, 502, dropped)")
    parser.add_argument("--page-cap", type=int, default=100, help="largest page size honoured")
    return parser


def build_parser() -> argparse.ArgumentParser:
    return add_arguments(argparse.ArgumentParser(
        prog="python -m neuroio_nb.sandbox",
        description="Serve a NeuroIO sources API sandbox on loopback until Ctrl-C."))


def run(args: argparse.Namespace) -> int:
    """Serve with the options of :func:`add_arguments` until Ctrl-C."""
    sandbox = Sandbox(args.sources, seed=args.seed, token=args.token, host=args.host,
                      port=args.port, latency=args.latency, fault_rate=args.fault_rate,
                      page_cap=args.page_cap)
    try:
        with sandbox:
            print(f"NEUROIO_API_URL={sandbox.url}", flush=True)
            print(f"NEUROIO_API_TOKEN={sandbox.token}", flush=True)
            print(f"# NeuroIO sandbox: {len(sandbox.sources)} sources at {sandbox.url}; "
                  "Ctrl-C to stop.", flush=True)
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        print(f"cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))
