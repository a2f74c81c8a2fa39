"""The command line: ``python -m neuroio_nb.sandbox [options]``.

:func:`add_arguments` and :func:`run` let ``neuroio-nb sandbox`` offer the same
options. Exit codes: 0 after Ctrl-C; :data:`EXIT_CANNOT_SERVE` (7) when it cannot
listen (the port is taken, the address is not this machine's), distinct from every
other ``neuroio-nb`` exit code; 3 for bad usage.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import NoReturn

from .data import LICENSE_ID_KINDS
from .faults import FAULT_KINDS
from .sandbox import Sandbox

#: Exit code when the sandbox cannot listen on the address asked for.
EXIT_CANNOT_SERVE = 7
#: Exit code for options that cannot be (as every ``neuroio-nb`` command's bad usage).
EXIT_USAGE = 3


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8765, help="port (0: any free port)")
    parser.add_argument("--sources", type=int, default=500, help="how many sources to generate")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated sources")
    parser.add_argument("--token", default=None, help="API token to accept (default: random)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added per request")
    parser.add_argument(
        "--fault-rate", type=float, default=0.0, help="share of requests that fail (503, 429, 502, dropped)"
    )
    parser.add_argument("--page-cap", type=int, default=100, help="largest page size honoured")
    parser.add_argument(
        "--license-ids",
        choices=LICENSE_ID_KINDS,
        default="mixed",
        help="'int': whole-number license ids only, some sources unlicensed, as "
        "NeuroIO has them; 'mixed' (default) also has text ids",
    )
    parser.add_argument(
        "--unknown-fields",
        action="store_true",
        help="add fields the client does not know: text that looks like numbers "
        "or booleans, and fields some sources lack",
    )
    parser.add_argument(
        "--fault",
        metavar="KIND=SHARE",
        action="append",
        default=[],
        type=_fault,
        help=f"a share of requests that get a fault of this kind "
        f"(repeatable; kinds: {', '.join(FAULT_KINDS)}); "
        "overrides --fault-rate",
    )
    return parser


def _fault(text: str) -> tuple[str, float]:
    kind, _, share = text.partition("=")
    if kind not in FAULT_KINDS:
        raise argparse.ArgumentTypeError(f"unknown fault kind {kind!r}; known: {', '.join(FAULT_KINDS)}")
    try:
        return kind, float(share)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: the share must be a number, e.g. 503=0.1") from None


class _Parser(argparse.ArgumentParser):
    """Bad usage exits with :data:`EXIT_USAGE`, as with every ``neuroio-nb`` command."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    return add_arguments(
        _Parser(
            prog="python -m neuroio_nb.sandbox",
            description="Serve a NeuroIO sources API sandbox on loopback until Ctrl-C.",
        )
    )


def run(args: argparse.Namespace) -> int:
    """Serve with the options of :func:`add_arguments` until Ctrl-C."""
    try:
        sandbox = Sandbox(
            args.sources,
            seed=args.seed,
            token=args.token,
            host=args.host,
            port=args.port,
            latency=args.latency,
            fault_rate=args.fault_rate,
            faults=dict(args.fault) if args.fault else None,
            page_cap=args.page_cap,
            license_ids=args.license_ids,
            unknown_fields=args.unknown_fields,
        )
    except ValueError as exc:
        print(f"cannot serve: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        with sandbox:
            print(f"NEUROIO_API_URL={sandbox.url}", flush=True)
            print(f"NEUROIO_API_TOKEN={sandbox.token}", flush=True)
            print(f"# NeuroIO sandbox: {len(sandbox.sources)} sources at {sandbox.url}; Ctrl-C to stop.", flush=True)
            # a client in another process cannot tell it talks to a sandbox: say how to keep its runs apart
            print(
                f"# Keep its runs out of your journal: NEUROIO_NB_JOURNAL={sandbox.journal_folder}"
                " (removed when it stops)",
                flush=True,
            )
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        print(f"cannot serve on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_CANNOT_SERVE


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))
