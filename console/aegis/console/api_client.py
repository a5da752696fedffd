"""The router's admin REST API over httpx: polls, operator actions and the event stream,
every failure mapped to one ``ApiError``."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final, TypeVar
from urllib.parse import quote

import httpx
from aegis.wire.messages import Instance
from aegis.wire.rest import InstancesResponse, ServicesResponse, WhoAmI

from .formatting import Clock, parse_timestamp, system_clock
from .listing import InstanceQuery
from .models import Identity, InstanceInfo, MaintenanceMark, RegistrySnapshot, ServiceSummary
from .sse import ServerSentEvent, SseParser

SERVICES_PATH: Final = "/api/v1/admin/services"
INSTANCES_PATH: Final = "/api/v1/admin/instances"
EVENTS_PATH: Final = "/api/v1/admin/events"
WHOAMI_PATH: Final = "/api/v1/admin/whoami"
DEFAULT_TIMEOUT: Final = 5.0
RETRY_CAP: Final = 30.0
# The router sends a keep-alive comment every 15 s: silence for longer means a dead link.
EVENTS_READ_TIMEOUT: Final = 45.0

ETAGS_KEPT: Final = 32

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ServicesListing:
    """``GET /services``: the summary, and the event id it reflects (``None``: older router)."""

    services: tuple[ServiceSummary, ...]
    version: str | None


@dataclass(frozen=True, slots=True)
class InstancePage:
    """One page of ``GET /instances``.

    ``paged`` is false for a router older than paging (no ``version``/``next_cursor``):
    it ignored ``limit`` and the filters and sent every instance.
    """

    instances: tuple[InstanceInfo, ...]
    total: int
    next_cursor: str | None
    version: str | None
    paged: bool


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
        # Bodies of recent GETs by URL, with their ETag: an unchanged listing comes back 304.
        self._etags: OrderedDict[str, tuple[str, Any]] = OrderedDict()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def fetch(self) -> RegistrySnapshot:
        """One poll: services, then every instance. Raises ``ApiError`` on any failure."""
        services_body = await self._get_json(SERVICES_PATH)
        instances_body = await self._get_json(INSTANCES_PATH)
        services = _parsed(parse_services, services_body)
        instances = _parsed(parse_instances, instances_body)
        return RegistrySnapshot(services=services, instances=instances, fetched_at=self._clock())

    async def whoami(self) -> Identity:
        """The name and role of the console's token (``ApiError`` 404: an older router)."""
        body = await self._get_json(WHOAMI_PATH)
        who = _parsed(WhoAmI.model_validate, body)
        return Identity(name=who.name, role=who.role)

    async def list_services(self) -> ServicesListing:
        """The services summary (conditional: an unchanged one costs the router a 304)."""
        body = await self._get_json(SERVICES_PATH, conditional=True)
        return ServicesListing(_parsed(parse_services, body), _version(body))

    async def list_instances(
        self, query: InstanceQuery, limit: int | None = None, cursor: str | None = None
    ) -> InstancePage:
        """One page of the instances matching ``query``, after ``cursor`` (``None``: the first)."""
        params: dict[str, str] = query.params()
        if limit is not None:
            params["limit"] = str(limit)
        if cursor is not None:
            params["cursor"] = cursor
        body = await self._get_json(INSTANCES_PATH, params, conditional=True)
        instances = _parsed(parse_instances, body)
        paged = isinstance(body, dict) and ("version" in body or "next_cursor" in body)
        if not paged:
            return InstancePage(instances, len(instances), None, None, paged=False)
        cursor_text = body.get("next_cursor")
        return InstancePage(
            instances,
            int(body.get("total", len(instances))),
            None if cursor_text is None else str(cursor_text),
            _version(body),
            paged=True,
        )

    async def deregister(self, service: str, instance_id: str) -> InstanceInfo:
        """Force-deregister one instance (it goes OFFLINE); the instance as now stored."""
        body = await self._send("DELETE", _instance_path(service, instance_id))
        return _parsed(parse_instance, body)

    async def set_instance_maintenance(
        self, service: str, instance_id: str, reason: str | None
    ) -> InstanceInfo:
        """Put one instance in maintenance with ``reason``, or take it out (``None``)."""
        path = _instance_path(service, instance_id) + "/maintenance"
        body = await self._maintenance(path, reason)
        return _parsed(parse_instance, body)

    async def set_service_maintenance(
        self, service: str, reason: str | None
    ) -> tuple[InstanceInfo, ...]:
        """Put every live instance of ``service`` in maintenance, or take them out."""
        body = await self._maintenance(f"{SERVICES_PATH}/{_segment(service)}/maintenance", reason)
        return _parsed(parse_instances, body)

    async def events(
        self, last_event_id: str | None, on_open: Callable[[], None]
    ) -> AsyncIterator[ServerSentEvent]:
        """Follow the change-event stream, after ``last_event_id`` if given, until it ends.

        ``on_open`` is called once the router has accepted the stream. Raises
        ``ApiError`` when it cannot be opened or breaks off.
        """
        headers = {"Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        timeout = httpx.Timeout(self.timeout, read=EVENTS_READ_TIMEOUT)
        with self._mapped_errors(EVENTS_READ_TIMEOUT):
            async with self._http.stream(
                "GET", EVENTS_PATH, headers=headers, timeout=timeout
            ) as response:
                if response.is_error:
                    await response.aread()
                    raise ApiError(
                        _error_reason(response), unreachable=False, status=response.status_code
                    )
                on_open()
                parser = SseParser()
                async for line in response.aiter_lines():
                    if (event := parser.feed(line)) is not None:
                        yield event

    async def _maintenance(self, path: str, reason: str | None) -> Any:
        if reason is None:
            return await self._send("DELETE", path)
        return await self._send("PUT", path, {"reason": reason})

    async def _get_json(
        self, path: str, params: Mapping[str, str] | None = None, *, conditional: bool = False
    ) -> Any:
        if not conditional:
            return await self._send("GET", path, params=params)
        url = str(httpx.URL(path, params=params))
        cached = self._etags.get(url)
        headers = {"If-None-Match": cached[0]} if cached else None
        response = await self._request("GET", path, params=params, headers=headers)
        if response.status_code == 304 and cached is not None:
            self._etags.move_to_end(url)
            return cached[1]
        body = self._json(response, path)
        if etag := response.headers.get("ETag"):
            self._etags[url] = (etag, body)
            self._etags.move_to_end(url)
            while len(self._etags) > ETAGS_KEPT:
                self._etags.popitem(last=False)
        return body

    async def _send(
        self, method: str, path: str, body: Any = None, params: Mapping[str, str] | None = None
    ) -> Any:
        response = await self._request(method, path, json=body, params=params)
        return self._json(response, path)

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        with self._mapped_errors(self.timeout):
            return await self._http.request(method, path, json=json, params=params, headers=headers)

    def _json(self, response: httpx.Response, path: str) -> Any:
        if response.is_error:
            raise ApiError(_error_reason(response), unreachable=False, status=response.status_code)
        try:
            return response.json()
        except ValueError as exc:
            raise ApiError(
                f"HTTP {response.status_code} from {path} is not JSON", unreachable=False
            ) from exc

    @contextmanager
    def _mapped_errors(self, timeout: float) -> Iterator[None]:
        """Transport failures (no HTTP answer) as ``ApiError(unreachable=True)``."""
        try:
            yield
        except httpx.TimeoutException as exc:
            raise ApiError(f"no answer within {timeout:g}s", unreachable=True) from exc
        except httpx.ConnectError as exc:
            raise ApiError(f"cannot connect: {_describe(exc)}", unreachable=True) from exc
        except httpx.HTTPError as exc:
            raise ApiError(
                f"connection failed: {type(exc).__name__}: {_describe(exc)}", unreachable=True
            ) from exc


def _version(body: Any) -> str | None:
    version = body.get("version") if isinstance(body, dict) else None
    return None if version is None else str(version)


def _segment(name: str) -> str:
    # Names come from the router; quoted all the same so no name can change the route.
    return quote(name, safe="")


def _instance_path(service: str, instance_id: str) -> str:
    return f"{SERVICES_PATH}/{_segment(service)}/instances/{_segment(instance_id)}"


def _parsed(parse: Callable[[Any], T], body: Any) -> T:
    try:
        return parse(body)
    except (KeyError, TypeError, ValueError) as exc:
        raise ApiError(
            f"unexpected response shape: {type(exc).__name__}: {exc}", unreachable=False
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
    hint = " (check --token / AEGIS_CONSOLE_TOKEN)" if response.status_code == 401 else ""
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
    return tuple(_record(item) for item in InstancesResponse.model_validate(body).instances)


def parse_instance(body: Any) -> InstanceInfo:
    """One instance as the wire contract spells it to a record; ``ValueError`` if bad."""
    return _record(Instance.model_validate(body))


def _record(item: Instance) -> InstanceInfo:
    mark = item.maintenance
    return InstanceInfo(
        service_name=item.service_name,
        instance_id=item.instance_id,
        status=item.status.value,
        registered_at=parse_timestamp(item.registered_at),
        last_heartbeat_at=parse_timestamp(item.last_heartbeat_at),
        metadata=item.metadata,
        maintenance=None
        if mark is None
        else MaintenanceMark(reason=mark.reason, since=parse_timestamp(mark.since)),
    )
