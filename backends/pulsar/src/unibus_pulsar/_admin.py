"""The Pulsar admin REST API (port 8080), the calls unibus needs and nothing more."""

from __future__ import annotations

import urllib.parse
from typing import Any

import httpx

from unibus.errors import ConnectionFailedError, OperationTimeoutError, TopologyError
from unibus_pulsar._errors import boundary

__all__ = ["AdminClient"]


class AdminClient:
    """Namespace policies, topics, partitions, subscriptions and stats over HTTP."""

    def __init__(self, base_url: str, *, tenant: str, namespace: str,
                 token: str | None = None, verify: bool | str = True,
                 timeout: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=headers,
                                       verify=verify, timeout=timeout)
        self._ns = f"{tenant}/{namespace}"

    async def close(self) -> None:
        await self._http.aclose()

    def _topic(self, name: str) -> str:
        return f"/admin/v2/persistent/{self._ns}/{urllib.parse.quote(name, safe='')}"

    async def _call(self, method: str, path: str, *, ok: tuple[int, ...] = (),
                    json: Any = None, params: dict[str, str] | None = None) -> httpx.Response:
        with boundary(f"Pulsar admin {method} {path}", TopologyError):
            try:
                response = await self._http.request(method, path, json=json, params=params)
            except httpx.TimeoutException as exc:
                raise OperationTimeoutError(
                    f"Pulsar admin API at {self.base_url} did not answer: {exc}") from exc
            except httpx.TransportError as exc:
                raise ConnectionFailedError(
                    f"Pulsar admin API unreachable at {self.base_url} ({exc}); set the "
                    "admin_url option if it is elsewhere") from exc
            if response.status_code in ok or response.is_success:
                return response
            raise TopologyError(
                f"Pulsar admin {method} {path} answered {response.status_code}: "
                f"{response.text[:300]}"
            )

    # -- namespace ----------------------------------------------------------------------------

    async def enable_deduplication(self) -> None:
        await self._call("POST", f"/admin/v2/namespaces/{self._ns}/deduplication", json=True)

    async def topics(self) -> set[str]:
        """Full names of the namespace's persistent topics and partitioned topics."""
        plain = await self._call("GET", f"/admin/v2/persistent/{self._ns}")
        parted = await self._call("GET", f"/admin/v2/persistent/{self._ns}/partitioned")
        return set(plain.json()) | set(parted.json())

    # -- topics -------------------------------------------------------------------------------

    async def create_topic(self, name: str, partitions: int) -> None:
        """Create ``name`` (partitioned when ``partitions`` > 1); an existing one is kept."""
        if partitions > 1:
            await self._call("PUT", self._topic(name) + "/partitions", json=partitions,
                             ok=(409,))
        else:
            await self._call("PUT", self._topic(name), ok=(409,))

    async def partitions(self, name: str) -> int:
        response = await self._call("GET", self._topic(name) + "/partitions", ok=(404,))
        return int(response.json().get("partitions", 0)) if response.is_success else 0

    async def set_retention(self, name: str, seconds: float | None) -> None:
        """Keep acknowledged messages ``seconds`` (None: forever) on topic ``name``."""
        minutes = -1 if seconds is None else max(1, int(seconds // 60))
        await self._call("POST", self._topic(name) + "/retention",
                         json={"retentionTimeInMinutes": minutes, "retentionSizeInMB": -1})

    async def delete_topic(self, name: str) -> None:
        """Delete ``name`` whether partitioned or not; a missing one is fine."""
        params = {"force": "true"}
        await self._call("DELETE", self._topic(name) + "/partitions", params=params,
                         ok=(404, 409, 412))
        await self._call("DELETE", self._topic(name), params=params, ok=(404, 409, 412))

    # -- subscriptions ------------------------------------------------------------------------

    async def create_subscription(self, name: str, subscription: str) -> None:
        """A durable subscription starting at the end of the topic; existing ones are kept."""
        await self._call("PUT", self._topic(name) + "/subscription/"
                         + urllib.parse.quote(subscription, safe=""), ok=(409,))

    async def delete_subscription(self, name: str, subscription: str) -> None:
        await self._call("DELETE", self._topic(name) + "/subscription/"
                         + urllib.parse.quote(subscription, safe=""),
                         params={"force": "true"}, ok=(404,))

    async def skip_all(self, name: str, subscription: str) -> None:
        """Acknowledge everything in ``subscription``'s backlog."""
        await self._call("POST", self._topic(name) + "/subscription/"
                         + urllib.parse.quote(subscription, safe="") + "/skip_all",
                         ok=(404,))

    async def internal_stats(self, name: str) -> dict[str, Any] | None:
        response = await self._call("GET", self._topic(name) + "/internalStats", ok=(404,))
        return response.json() if response.is_success else None

    async def update_partitions(self, name: str, partitions: int) -> None:
        await self._call("POST", self._topic(name) + "/partitions", json=partitions)

    async def set_persistence(self, name: str, replicas: int) -> None:
        """Write ``replicas`` copies of every entry (bookie ensemble, write and ack quorum)."""
        await self._call("POST", self._topic(name) + "/persistence", json={
            "bookkeeperEnsemble": replicas, "bookkeeperWriteQuorum": replicas,
            "bookkeeperAckQuorum": replicas, "managedLedgerMaxMarkDeleteRate": 0,
        })

    async def set_deduplication(self, name: str, enabled: bool) -> None:
        await self._call("POST", self._topic(name) + "/deduplicationEnabled", json=enabled)
