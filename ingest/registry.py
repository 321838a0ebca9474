"""Tenants, devices and the metric catalogue as ingest sees them: cached, refreshed on a miss."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable

import psycopg

from ingest.decode import Metric, Rejection
from storage import ingest as store
from storage.ingest import DeviceRef

NEGATIVE_TTL_S = 30.0
MAX_MISSING = 20_000


class Registry:
    """Resolves (tenant, device id, kind) to a device key, or to the reason it cannot be stored."""

    def __init__(self, register_unknown: bool, clock: Callable[[], float] = time.monotonic) -> None:
        self.register_unknown = register_unknown
        self.catalogue: dict[str, Metric] = {}
        self._tenants: set[str] = set()
        self._devices: dict[tuple[str, str], DeviceRef] = {}
        self._missing: dict[tuple[str, str], float] = {}
        self._clock = clock

    async def load(self, conn: psycopg.AsyncConnection) -> None:
        self.catalogue = {
            m.name: Metric(m.metric_id, m.name, m.senml_unit, m.min_value, m.max_value)
            for m in await store.load_metrics(conn)
        }
        self._tenants = await store.load_tenants(conn)
        self._devices = await store.load_devices(conn)
        self._missing.clear()

    async def resolve(
        self, conn: psycopg.AsyncConnection, wanted: Iterable[tuple[str, str, str]]
    ) -> dict[tuple[str, str, str], DeviceRef | Rejection]:
        """Look up every (tenant, device id, kind): the same device id under two kinds gets two answers. One
        query for the devices not cached."""
        now = self._clock()
        unique = set(wanted)
        kinds = {(t, d): k for t, d, k in sorted(unique)}  # the kind a device unknown so far is registered as
        misses = [
            key
            for key in kinds
            if key not in self._devices and (key not in self._missing or now - self._missing[key] > NEGATIVE_TTL_S)
        ]
        if misses:
            if any(t not in self._tenants for t, _ in misses):
                self._tenants = await store.load_tenants(conn)
            found = await store.find_devices(conn, misses)
            if self.register_unknown:
                new = [(t, d, kinds[(t, d)]) for t, d in misses if (t, d) not in found and t in self._tenants]
                found.update(await store.register_devices(conn, new))
            self._devices.update(found)
            for key in misses:
                if key not in found:
                    self._remember_missing(key, now)
                else:
                    self._missing.pop(key, None)
        result: dict[tuple[str, str, str], DeviceRef | Rejection] = {}
        for tenant, device, kind in unique:
            ref = self._devices.get((tenant, device))
            if ref is None:
                if tenant not in self._tenants:
                    result[(tenant, device, kind)] = Rejection("unknown_tenant", f"no tenant {tenant!r}")
                else:
                    result[(tenant, device, kind)] = Rejection(
                        "unknown_device", f"no device {device!r} for tenant {tenant!r}"
                    )
            elif ref.device_kind != kind:
                result[(tenant, device, kind)] = Rejection(
                    "device_kind_mismatch", f"device {device!r} is a {ref.device_kind}, the topic says {kind}"
                )
            else:
                result[(tenant, device, kind)] = ref
        return result

    def _remember_missing(self, key: tuple[str, str], now: float) -> None:
        """Remember an unknown device for ``NEGATIVE_TTL_S`` (one lookup per device and period, not per message),
        at most ``MAX_MISSING`` of them: a hostile account inventing device ids costs bounded memory."""
        self._missing.pop(key, None)
        self._missing[key] = now  # insertion order is age order
        if len(self._missing) > MAX_MISSING:
            for old in list(itertools.islice(self._missing, len(self._missing) - MAX_MISSING)):
                del self._missing[old]
