"""neuroio-nb: the sources of a NeuroIO account, in a notebook.

Explore every source as one typed DataFrame, edit settings in bulk with a
reviewed plan, edit one source in a form, and keep CSV exports.
"""
from __future__ import annotations

from ._version import __version__
from .client import Client  # noqa: E402
from .csvio import read_csv  # noqa: E402
from .schema import EntryResult  # noqa: E402

__all__ = ["Client", "EntryResult", "read_csv", "__version__"]
