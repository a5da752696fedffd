"""The detail panel: one instance's fields and its full metadata as JSON."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from .formatting import age_between, format_timestamp, pretty_json, status_text
from .models import InstanceInfo


def instance_fields(instance: InstanceInfo, now: datetime) -> Table:
    """The instance's fields as a two-column grid."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("Service", Text(instance.service_name))
    grid.add_row("Instance", Text(instance.instance_id))
    grid.add_row("Status", status_text(instance.status))
    grid.add_row("Registered", Text(f"{format_timestamp(instance.registered_at)} UTC"))
    heartbeat = format_timestamp(instance.last_heartbeat_at)
    age = age_between(instance.last_heartbeat_at, now)
    grid.add_row("Last heartbeat", Text(f"{heartbeat} UTC ({age} ago)"))
    mark = instance.maintenance
    if mark is not None:
        since = f"since {format_timestamp(mark.since)} UTC ({age_between(mark.since, now)})"
        grid.add_row(
            "Maintenance",
            Text.assemble(("IN MAINTENANCE", "bold magenta"), f" {since}: ", mark.reason),
        )
    if instance.micro:
        grid.add_row("Source", Text("NATS micro service, found on the bus (not registered)"))
    return grid


class DetailScreen(ModalScreen[None]):
    """One instance with its full metadata as pretty JSON; escape or enter closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss", "Close"),
        Binding("enter", "dismiss", "Close", show=False),
    ]

    def __init__(self, instance: InstanceInfo, now: datetime) -> None:
        super().__init__()
        self.instance = instance
        self.now = now

    def compose(self) -> ComposeResult:
        """Fields on top, metadata below, scrolling when it is long."""
        with VerticalScroll(id="detail") as scroll:
            scroll.border_title = f"{self.instance.service_name} / {self.instance.instance_id}"
            scroll.border_subtitle = "escape: close"
            yield Static(instance_fields(self.instance, self.now), id="detail-fields")
            yield Static(Text("Metadata", style="bold"), id="detail-heading")
            metadata = Syntax(
                pretty_json(self.instance.metadata),
                "json",
                theme="ansi_dark",
                background_color="default",
                word_wrap=True,
            )
            yield Static(metadata, id="detail-metadata")
