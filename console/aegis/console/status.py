"""The header line and the error banner: what the console knows about its connection."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from rich.text import Text

from .api_client import ApiError
from .formatting import age_between, counted, format_age
from .models import Identity


@dataclass(slots=True)
class PollState:
    """Where polling stands; the app updates it, the texts below read it."""

    api_url: str
    interval: float
    paused: bool = False
    last_success: datetime | None = None
    error: ApiError | None = None
    failures: int = 0
    next_poll_at: datetime | None = None
    services: int = 0
    instances: int = 0
    identity: Identity | None = None  # the token's name and role, once the router said
    live_stream: bool = False
    """The change-event stream is open and the view follows it (list + watch)."""
    last_event_at: datetime | None = None

    @property
    def stale(self) -> bool:
        """Data is on screen but the latest poll failed."""
        return self.error is not None and self.last_success is not None


def _seconds(value: float) -> str:
    return f"{value:g}s"


def status_line(state: PollState, now: datetime) -> Text:
    """``AegisIPC  <url>  ● connected  as oncall (operator)  data 2s old  3 services · 7
    instances  every 2s`` (``as ...`` once the router has said who the token is)."""
    line = Text.assemble(("AegisIPC", "bold"), "  ", (state.api_url, "underline"), "  ")
    if state.error is not None:
        word = "unreachable" if state.error.unreachable else "error"
        line.append(f"✕ {word}", style="bold red")
    elif state.last_success is None:
        line.append("◌ connecting", style="yellow")
    else:
        line.append("● connected", style="bold green")
    if state.identity is not None:
        who = state.identity
        line.append(f"  as {who.name} ")
        line.append(f"({who.role})", style="bold" if who.may_act else "bold yellow")
    if state.last_success is not None:
        if state.live_stream and not state.stale:
            line.append("  live", style="bold green")
            if state.last_event_at is None:
                line.append(", no event yet", style="dim")
            else:
                line.append(f", last event {age_between(state.last_event_at, now)} ago")
        else:
            age = age_between(state.last_success, now)
            line.append(f"  data {age} old", style="red" if state.stale else "")
        if state.stale:
            line.append(" (stale)", style="bold red")
        services = counted(state.services, "service")
        line.append(f"  {services} · {counted(state.instances, 'instance')}")
    if state.paused:
        line.append("  ❚❚ paused", style="bold yellow")
    else:
        line.append(f"  every {_seconds(state.interval)}", style="dim")
    return line


def banner_text(state: PollState, now: datetime) -> Text | None:
    """The banner shown while the router cannot be read; ``None`` when all is well."""
    error = state.error
    if error is None:
        return None
    title = "Router unreachable" if error.unreachable else "Router error"
    text = Text.assemble(("⚠ ", "bold"), (title, "bold"), f" at {state.api_url}: {error.reason}")
    if state.last_success is not None:
        text.append(
            f"\nShowing data from {age_between(state.last_success, now)} ago, marked stale."
        )
    else:
        text.append("\nNo data yet.")
    if state.paused:
        text.append(" Polling paused: press p to resume, r to retry now.")
    elif state.next_poll_at is not None:
        # Rounded up: "retrying in 0s" would read as stuck.
        wait = format_age(math.ceil((state.next_poll_at - now).total_seconds()))
        attempts = counted(state.failures, "failed attempt")
        text.append(f" {attempts}; retrying in {wait} (r: now).")
    return text
