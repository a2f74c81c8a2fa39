"""``Client``: the connection (:class:`~neuroio_nb._transport.Transport`) with its sources on top.

This is the facade layer: ``client.sources`` is created on first use and kept.
"""

from __future__ import annotations

import functools

from ._sources import Sources
from ._transport import DEFAULT_URL, TOKEN_ENV, URL_ENV, Transport, error_from_response


class Client(Transport):
    """Everything about one NeuroIO API: the connection, and ``client.sources``.

    ``api_token`` defaults to ``$NEUROIO_API_TOKEN`` and ``base_url`` to
    ``$NEUROIO_API_URL`` or ``https://api.neuroio.com``. ``max_workers`` bounds
    the writes in flight at once and ``max_readers`` (default ``max_workers``) the
    reads, apart, so a job's reads never hold up its writes; a 429 narrows both.
    ``max_retries`` is how many times a retryable failure is retried. ``journal``:
    where every write is recorded before it is sent (None: ``$NEUROIO_NB_JOURNAL``,
    else the user data folder, but for a client of a sandbox serving in this process,
    that sandbox's temporary journal; a folder path; False: no journal).

    Example::

        client = Client()   # $NEUROIO_API_TOKEN, $NEUROIO_API_URL
        client = Client(sandbox.token, sandbox.url, max_workers=4, journal=False)
    """

    @functools.cached_property
    def sources(self) -> Sources:
        """The sources: one page, every page, one source, and the bulk jobs built on them.

        Example::

            frame = client.sources.to_frame()
        """
        return Sources(self)


__all__ = ["DEFAULT_URL", "TOKEN_ENV", "URL_ENV", "Client", "error_from_response"]
