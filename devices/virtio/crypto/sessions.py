"""The session table: immutable sessions by id.

A session is a frozen parameter object, so a request in flight holds its own reference:
destroying the session removes it from the table and nothing else, and requests already
dispatched finish with the parameters they started with. Ids are never reused, so a
stale id is always INVSESS rather than somebody else's session.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from vmsim.devices.virtio.crypto.aead import AeadParams
from vmsim.devices.virtio.crypto.akcipher import AkcipherParams
from vmsim.devices.virtio.crypto.chaining import ChainParams
from vmsim.devices.virtio.crypto.cipher import CipherParams
from vmsim.devices.virtio.crypto.constants import Service, Status
from vmsim.devices.virtio.crypto.digest import HashParams, MacParams
from vmsim.devices.virtio.crypto.wire import fail

Params = Union[CipherParams, ChainParams, HashParams, MacParams, AeadParams, AkcipherParams]

SERVICE_OF: dict[type, Service] = {
    CipherParams: Service.CIPHER, ChainParams: Service.CIPHER, HashParams: Service.HASH,
    MacParams: Service.MAC, AeadParams: Service.AEAD, AkcipherParams: Service.AKCIPHER,
}


@dataclass(frozen=True, slots=True)
class Session:
    id: int
    params: Params

    @property
    def service(self) -> Service:
        return SERVICE_OF[type(self.params)]


class SessionTable:
    """Sessions by id, bounded by `capacity`."""

    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        self._sessions: dict[int, Session] = {}
        self._next_id = 1

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, params: Params, full_status: Status) -> Session:
        """Add a session; a full table fails with `full_status` (NOSPC with REVISION_1, else ERR)."""
        if len(self._sessions) >= self.capacity:
            raise fail(f"session table full ({self.capacity})", full_status)
        session = Session(self._next_id, params)
        self._next_id += 1
        self._sessions[session.id] = session
        return session

    def get(self, session_id: int, service: Service) -> Session:
        """The live session of that service, or INVSESS."""
        session = self._sessions.get(session_id)
        # SERVICE_OF rather than the `service` property: this runs for every request.
        if session is None or SERVICE_OF[type(session.params)] != service:
            raise fail(f"no {service.name} session {session_id}", Status.INVSESS)
        return session

    def destroy(self, session_id: int, service: Service) -> None:
        """Remove a session; an unknown id is ERR, as the spec's destroy statuses say."""
        session = self._sessions.get(session_id)
        if session is None or session.service != service:
            raise fail(f"destroy of unknown {service.name} session {session_id}", Status.ERR)
        del self._sessions[session_id]

    def clear(self) -> None:
        self._sessions.clear()
