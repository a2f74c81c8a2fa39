"""neuroio-nb: the sources of a NeuroIO account, in a notebook.

Explore every source as one typed DataFrame, edit settings in bulk with a
reviewed plan, edit one source in a form, and keep CSV exports.
"""

from __future__ import annotations

from ._client import Client
from ._jobs.csvio import read_csv
from ._schema import EntryResult
from ._version import __version__

__all__ = ["Client", "EntryResult", "__version__", "read_csv"]
