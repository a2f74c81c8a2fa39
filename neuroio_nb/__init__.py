"""neuroio-nb: the sources of a NeuroIO account, in a notebook.

Explore every source as one typed DataFrame, edit settings in bulk with a
reviewed plan, edit one source in a form, and keep CSV exports.

Everything a user needs is named here (and the exceptions and warnings in
:mod:`neuroio_nb.errors`, the embedded server in :mod:`neuroio_nb.sandbox`); every
other module is private and may change without notice.
"""

from __future__ import annotations

from ._client import Client
from ._explore import non_defaults
from ._jobs.csvio import read_csv
from ._jobs.history import History
from ._jobs.outcomes import Report
from ._jobs.plan import Plan
from ._jobs.policy import Policy
from ._schema import EntryResult
from ._sources import Sources
from ._version import __version__

__all__ = [
    "Client",
    "EntryResult",
    "History",
    "Plan",
    "Policy",
    "Report",
    "Sources",
    "__version__",
    "non_defaults",
    "read_csv",
]
