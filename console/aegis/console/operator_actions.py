"""Operator actions: deregister an instance, put an instance or a service in maintenance.

Each asks first (a modal), then calls the router in a worker; the outcome, refusals
included, is a notification, never an exception.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from rich.text import Text
from textual.screen import Screen

from .api_client import ApiClient, ApiError
from .formatting import counted
from .models import InstanceInfo
from .prompts import ConfirmScreen, ReasonScreen

R = TypeVar("R")

ERROR_SECONDS = 12.0  # long enough to read a refusal, and the hint about the token


@dataclass(frozen=True, slots=True)
class MaintenanceTarget:
    """What ``m`` acts on: one instance, or (``instance_id`` None) every instance of a service."""

    service: str
    instance_id: str | None
    in_maintenance: bool

    @property
    def label(self) -> str:
        """``orders/orders-2`` or ``service orders``."""
        if self.instance_id is None:
            return f"service {self.service}"
        return f"{self.service}/{self.instance_id}"


def instance_target(instance: InstanceInfo) -> MaintenanceTarget:
    """The instance, in maintenance or not."""
    return MaintenanceTarget(
        instance.service_name, instance.instance_id, instance.maintenance is not None
    )


def service_target(service: str, instances: Iterable[InstanceInfo]) -> MaintenanceTarget:
    """The service counts as in maintenance when every live instance of it is marked.

    So ``m`` on a service with one drained instance drains the rest, and ``m`` again
    takes them all out.
    """
    live = [i for i in instances if i.service_name == service and i.status != "OFFLINE"]
    drained = bool(live) and all(i.maintenance is not None for i in live)
    return MaintenanceTarget(service, None, drained)


class OperatorActions:
    """Runs actions for ``screen`` with ``client``; ``after`` is called on each success."""

    def __init__(self, screen: Screen[None], client: ApiClient, after: Callable[[], None]) -> None:
        self.screen = screen
        self.client = client
        self.after = after

    def deregister(self, instance: InstanceInfo) -> None:
        """Ask, then force-deregister ``instance``."""
        key = instance.key
        question = Text.assemble(
            "Deregister ",
            (key, "bold"),
            "?\nIt goes OFFLINE at once and is removed later. A service that is still "
            "running registers again on its next heartbeat: stop it first to keep it out.",
        )

        def answered(yes: bool | None) -> None:
            if yes:
                self._run(
                    f"deregister {key}",
                    lambda: self.client.deregister(instance.service_name, instance.instance_id),
                    lambda result: f"{key} deregistered: now {result.status}",
                )

        self.screen.app.push_screen(ConfirmScreen("Deregister", question, "Deregister"), answered)

    def toggle_maintenance(self, target: MaintenanceTarget) -> None:
        """Take ``target`` out of maintenance at once, or ask why and put it in."""
        if target.in_maintenance:
            self._set_maintenance(target, None)
            return
        scope = "every live instance of it" if target.instance_id is None else "it"
        question = Text.assemble(
            "Put ",
            (target.label, "bold"),
            f" in maintenance? Discovery and resolvers leave {scope} out until you take "
            "it out again (m); heartbeats keep it alive. Why?",
        )

        def answered(reason: str | None) -> None:
            if reason is not None:
                self._set_maintenance(target, reason)

        self.screen.app.push_screen(ReasonScreen("Maintenance", question), answered)

    def _set_maintenance(self, target: MaintenanceTarget, reason: str | None) -> None:
        state = "out of maintenance" if reason is None else f"in maintenance: {reason}"
        verb = "take" if reason is None else "put"
        what = f"{verb} {target.label} {'out of' if reason is None else 'in'} maintenance"
        instance_id = target.instance_id
        if instance_id is None:
            self._run(
                what,
                lambda: self.client.set_service_maintenance(target.service, reason),
                lambda done: f"{target.label}: {counted(len(done), 'instance')} {state}",
            )
        else:
            self._run(
                what,
                lambda: self.client.set_instance_maintenance(target.service, instance_id, reason),
                lambda _: f"{target.label} {state}",
            )

    def _run(self, what: str, call: Callable[[], Awaitable[R]], done: Callable[[R], str]) -> None:
        async def act() -> None:
            try:
                result = await call()
            except ApiError as exc:
                title = "Not allowed" if exc.status in (401, 403) else "Failed"
                self.screen.notify(
                    f"Could not {what}: {exc.reason}",
                    title=title,
                    severity="error",
                    timeout=ERROR_SECONDS,
                )
                return
            self.screen.notify(done(result), title="Done")
            self.after()

        self.screen.run_worker(act(), group="action")
