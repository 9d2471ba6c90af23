"""The backend registry: the newest backend (new requests bind to it) and each older one that a
request submitted before an adapter switch still needs.

Adapter switches: new requests bind to the new backend at once (their memory keys carry its
identity); requests submitted before the switch keep the backend they were keyed with and finish
on it, so a file is never translated half by each adapter. A backend nobody waits for any more is
retired on the worker thread (its optional ``retire()`` frees the adapter). Used under the
engine's lock, except ``retire``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from asmr_daemon.engine.requests import Backend

log = logging.getLogger(__name__)


class Backends:
    def __init__(self, backend: Backend) -> None:
        self.newest = backend
        self._by_identity: dict[str, Backend] = {backend.identity: backend}

    def swap(self, backend: Backend) -> Backend:
        """Make ``backend`` the newest; switching back to an adapter still in use keeps the backend
        that already has it."""
        self.newest = self._by_identity.setdefault(backend.identity, backend)
        return self.newest

    def get(self, identity: str) -> Backend:
        """The backend a request keyed with ``identity`` runs on."""
        return self._by_identity.get(identity, self.newest)

    def unneeded(self, needed: Iterable[str]) -> list[str]:
        """Identities of old backends that no request in ``needed`` uses."""
        keep = set(needed) | {self.newest.identity}
        return [identity for identity in self._by_identity if identity not in keep]

    def pop(self, identity: str) -> Backend:
        return self._by_identity.pop(identity)


def retire(backend: Backend) -> None:
    """Let an old backend free what it holds (e.g. its adapter's weights); worker thread only."""
    retire_fn = getattr(backend, "retire", None)
    if retire_fn is None:
        return
    try:
        retire_fn()
        log.info("retired backend %s", backend.identity)
    except Exception:  # freeing memory must not stop the engine
        log.exception("retiring backend %s failed", backend.identity)
