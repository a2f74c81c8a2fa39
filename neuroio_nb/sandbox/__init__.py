"""An embedded NeuroIO sources API for demos, notebooks, tests and benchmarks.

    with Sandbox(sources=500, latency=0.02, fault_rate=0.1) as sb:
        client = Client(sb.token, sb.url)

It serves NeuroIO's sources API on loopback (``/v1/sources/``: listing with
``limit``/``offset`` pages, ``q`` and ``spaces_ids`` filters; get, create, update
and delete one source; token auth; JSON errors) and can add latency, fail a share of
requests, limit the request rate, cap the page size, break list pages, and
record every request it saw. ``python -m neuroio_nb.sandbox`` runs one.
"""

from __future__ import annotations

from .cli import add_arguments, build_parser, main
from .data import generate_sources
from .faults import FAULT_KINDS, TRANSIENT_KINDS
from .fields import EXTRA_FIELDS, TRICKY_TEXTS, VARIETY_FIELDS
from .log import RequestRecord
from .sandbox import Sandbox

__all__ = [
    "EXTRA_FIELDS",
    "FAULT_KINDS",
    "TRANSIENT_KINDS",
    "TRICKY_TEXTS",
    "VARIETY_FIELDS",
    "RequestRecord",
    "Sandbox",
    "add_arguments",
    "build_parser",
    "generate_sources",
    "main",
]
