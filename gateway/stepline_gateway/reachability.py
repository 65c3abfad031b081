"""Apps that cannot be reached, and since when: the patience an app that is restarting is given.

A call that could not connect at all (connection refused, unknown host) never reached the function, so
nothing ran. With ``unreachable_patience_s`` set (``stepline dev`` sets it: an app on a laptop restarts
often), such a call is tried again on the backoff of its current attempt without spending an attempt,
until its app has been unreachable for that long; after that, attempts count as for any error. The
record is kept per app URL in memory: it only decides how patient to be, so a restarted gateway simply
starts being patient again. Any answer from the app ends its record.
"""

from __future__ import annotations

import datetime
import logging

log = logging.getLogger(__name__)


class Reachability:
    def __init__(self, patience: datetime.timedelta) -> None:
        self._patience = patience
        self._since: dict[str, datetime.datetime] = {}

    def waits_for(self, url: str, now: datetime.datetime) -> bool:
        """The app at ``url`` could not be reached: whether its call waits without spending an attempt."""
        if self._patience <= datetime.timedelta(0):
            return False
        since = self._since.setdefault(url, now)
        if since == now:
            log.warning(
                "the app at %s cannot be reached: its calls wait for it for up to %g s without spending "
                "attempts",
                url,
                self._patience.total_seconds(),
            )
        return now - since < self._patience

    def reached(self, url: str) -> None:
        """The app at ``url`` answered."""
        if self._since.pop(url, None) is not None:
            log.info("the app at %s answers again", url)
