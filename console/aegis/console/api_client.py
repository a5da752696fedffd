"""Polling the router's admin REST API over httpx, every failure mapped to one ``ApiError``."""

from __future__ import annotations

from typing import Any, Final

import httpx
from aegis.wire.rest import InstancesResponse, ServicesResponse

from .formatting import Clock, parse_timestamp, system_clock
from .models import InstanceInfo, RegistrySnapshot, ServiceSummary

SERVICES_PATH: Final = "/api/v1/admin/services"
INSTANCES_PATH: Final = "/api/v1/admin/instances"
DEFAULT_TIMEOUT: Final = 5.0
RETRY_CAP: Final = 30.0


class ApiError(Exception):
    """A poll that failed, with a one-line ``reason`` fit for the banner.

    ``unreachable`` is true when no HTTP answer came at all (refused, timed out,
    dropped), false when the router answered but not with usable data.
    """

    def __init__(self, reason: str, *, unreachable: bool, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.unreachable = unreachable
        self.status = status


def retry_delay(failures: int, interval: float, cap: float = RETRY_CAP) -> float:
    """Seconds to wait before the next poll after ``failures`` failures in a row.

    Doubles from ``interval`` and stops at ``cap``, but is never shorter than the
    interval the user asked for.
    """
    if failures <= 0:
        return interval
    # The exponent is bounded so a long outage cannot overflow the float.
    grown = interval * 2.0 ** min(failures - 1, 16)
    return min(grown, max(cap, interval))


class ApiClient:
    """Fetches the registry with two requests per poll, whatever the number of services."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        clock: Clock = system_clock,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._clock = clock
        headers = {"Accept": "application/json", "User-Agent": "aegis-console"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=timeout)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def fetch(self) -> RegistrySnapshot:
        """One poll: services, then every instance. Raises ``ApiError`` on any failure."""
        services_body = await self._get_json(SERVICES_PATH)
        instances_body = await self._get_json(INSTANCES_PATH)
        try:
            services = parse_services(services_body)
            instances = parse_instances(instances_body)
        except (KeyError, TypeError, ValueError) as exc:
            raise ApiError(
                f"unexpected response shape: {type(exc).__name__}: {exc}", unreachable=False
            ) from exc
        return RegistrySnapshot(services=services, instances=instances, fetched_at=self._clock())

    async def _get_json(self, path: str) -> Any:
        try:
            response = await self._http.get(path)
        except httpx.TimeoutException as exc:
            raise ApiError(f"no answer within {self.timeout:g}s", unreachable=True) from exc
        except httpx.ConnectError as exc:
            raise ApiError(f"cannot connect: {_describe(exc)}", unreachable=True) from exc
        except httpx.HTTPError as exc:
            raise ApiError(
                f"connection failed: {type(exc).__name__}: {_describe(exc)}", unreachable=True
            ) from exc
        if response.is_error:
            raise ApiError(_error_reason(response), unreachable=False, status=response.status_code)
        try:
            return response.json()
        except ValueError as exc:
            raise ApiError(
                f"HTTP {response.status_code} from {path} is not JSON", unreachable=False
            ) from exc


def _describe(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


def _error_reason(response: httpx.Response) -> str:
    """``HTTP 404 SERVICE_NOT_FOUND: message`` from the standard error body, else the status."""
    head = f"HTTP {response.status_code}"
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        text = " ".join(response.text.split())[:80]
        reason = f"{head} {response.reason_phrase}".rstrip()
        return f"{reason}: {text}" if text else reason
    hint = " (check --token / AEGIS_ADMIN_TOKEN)" if response.status_code in (401, 403) else ""
    return f"{head} {code}: {message}{hint}"


def parse_services(body: Any) -> tuple[ServiceSummary, ...]:
    """``GET /services`` body (the wire contract's shape) to records; ``ValueError`` if bad."""
    return tuple(
        ServiceSummary(
            name=item.name,
            instance_count=item.instance_count,
            online=item.statuses.ONLINE,
            unhealthy=item.statuses.UNHEALTHY,
            offline=item.statuses.OFFLINE,
        )
        for item in ServicesResponse.model_validate(body).services
    )


def parse_instances(body: Any) -> tuple[InstanceInfo, ...]:
    """``GET /instances`` body (the wire contract's shape) to records; ``ValueError`` if bad."""
    return tuple(
        InstanceInfo(
            service_name=item.service_name,
            instance_id=item.instance_id,
            status=item.status.value,
            registered_at=parse_timestamp(item.registered_at),
            last_heartbeat_at=parse_timestamp(item.last_heartbeat_at),
            metadata=item.metadata,
        )
        for item in InstancesResponse.model_validate(body).instances
    )
