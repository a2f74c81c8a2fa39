"""``python -m neuroio_nb.sandbox``: serve a sandbox until Ctrl-C."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
