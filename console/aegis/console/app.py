"""The dashboard: polls the router, keeps two keyed tables in step, survives outages."""

from __future__ import annotations

from datetime import timedelta
from typing import ClassVar

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Input, Static

from .api_client import ApiClient, ApiError, retry_delay
from .formatting import Clock, counted, system_clock
from .models import InstanceInfo, RegistrySnapshot, ServiceSummary
from .screens import DetailScreen, HelpScreen
from .status import PollState, banner_text, status_line
from .tables import (
    ALL_SERVICES,
    HEARTBEAT_COLUMN,
    INSTANCE_COLUMNS,
    INSTANCE_SORTS,
    SERVICE_COLUMNS,
    all_services_row,
    heartbeat_cell,
    instance_cells,
    matches,
    service_cells,
    service_order,
)
from .widgets import FilterInput, InstancesTable, ServicesTable

TICK_SECONDS = 1.0
_TABLE_ACTIONS = frozenset({"filter", "cycle_sort", "detail", "help"})


class ConsoleApp(App[None]):
    """Live view of an AegisIPC router's registry, read from its admin REST API."""

    TITLE = "aegis-console"
    CSS = """
    #status { height: 1; padding: 0 1; background: $panel; }
    #banner {
        display: none; height: auto; padding: 0 1;
        background: $error 25%; border-left: thick $error;
    }
    #banner.-shown { display: block; }
    .box { border: round $panel-lighten-2; }
    .box:focus-within { border: round $accent; }
    .box.-stale { border: round $error; }
    .box.-stale KeyedTable { text-opacity: 60%; }
    #services-box { height: auto; max-height: 40%; }
    #instances-box { height: 1fr; }
    KeyedTable { height: auto; max-height: 100%; }
    #empty { display: none; padding: 1 1; color: $text-muted; height: auto; }
    #empty.-shown { display: block; }
    #filter { display: none; dock: bottom; }
    #filter.-shown { display: block; }
    DetailScreen, HelpScreen { align: center middle; }
    #detail { width: 90%; max-width: 110; height: auto; max-height: 90%;
              border: round $accent; padding: 0 1; background: $surface; }
    #detail-heading { margin-top: 1; }
    #help { width: auto; max-width: 90%; height: auto; border: round $accent;
            padding: 1 2; background: $surface; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        # Priority, so it acts before the keys typed right after it are handed to the table.
        Binding("slash", "filter", "Filter", key_display="/", priority=True),
        Binding("s", "cycle_sort", "Sort"),
        Binding("r", "refresh", "Refresh"),
        Binding("p", "toggle_pause", "Pause/resume"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("q", "quit", "Quit"),
    ]

    AUTO_FOCUS = "#instances"

    def __init__(
        self,
        api_url: str,
        *,
        interval: float = 2.0,
        token: str | None = None,
        clock: Clock = system_clock,
        client: ApiClient | None = None,
    ) -> None:
        super().__init__()
        self.clock = clock
        self.client = client or ApiClient(api_url, token=token, clock=clock)
        self.state = PollState(api_url=self.client.base_url, interval=interval)
        self.snapshot: RegistrySnapshot | None = None
        self.selected_service: str | None = None
        self.filter_text = ""
        self.sort_index = 0
        self._instances: dict[str, InstanceInfo] = {}
        self._timer: Timer | None = None
        # Held directly: while a modal screen is up, queries would search that screen.
        self.services_table = ServicesTable(SERVICE_COLUMNS, id="services")
        self.instances_table = InstancesTable(INSTANCE_COLUMNS, id="instances")
        self.services_box = Vertical(id="services-box", classes="box")
        self.instances_box = Vertical(id="instances-box", classes="box")
        self._status = Static(id="status")
        self._banner = Static(id="banner")
        self._empty = Static(id="empty")
        self._filter = FilterInput(
            placeholder="filter: service or instance id substring", id="filter"
        )

    def compose(self) -> ComposeResult:
        """Status line, error banner, services over instances, filter line, footer."""
        yield self._status
        yield self._banner
        with self.services_box:
            yield self.services_table
        with self.instances_box:
            yield self.instances_table
            yield self._empty
        yield self._filter
        yield Footer()

    def on_mount(self) -> None:
        """Start polling and the once-a-second refresh of ages."""
        self.services_box.border_title = "Services"
        self.instances_table.set_live_column(
            HEARTBEAT_COLUMN, lambda instance: heartbeat_cell(instance, self.clock())
        )
        self._update_titles()
        self._update_status()
        self.set_interval(TICK_SECONDS, self.refresh_clock_texts)
        self.poll()

    async def on_unmount(self) -> None:
        """Close the HTTP connections."""
        await self.client.aclose()

    # Polling -------------------------------------------------------------

    @work(exclusive=True, group="poll")
    async def poll(self) -> None:
        """Fetch once, show the result, and schedule the next poll.

        Exclusive: starting a poll (``r``) cancels one in flight, so polls never overlap.
        """
        self._cancel_timer()
        try:
            snapshot = await self.client.fetch()
        except ApiError as exc:
            self.state.error = exc
            self.state.failures += 1
        else:
            self.state.error = None
            self.state.failures = 0
            self.state.last_success = snapshot.fetched_at
            self.show_snapshot(snapshot)
        self._schedule_next()
        self.refresh_clock_texts()

    def _schedule_next(self) -> None:
        if self.state.paused:
            self.state.next_poll_at = None
            return
        delay = retry_delay(self.state.failures, self.state.interval)
        self.state.next_poll_at = self.clock() + timedelta(seconds=delay)
        self._timer = self.schedule_poll(delay)

    def schedule_poll(self, delay: float) -> Timer | None:
        """Start a poll in ``delay`` seconds (tests override this to keep time still)."""
        return self.set_timer(delay, self.poll)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None

    def refresh_clock_texts(self) -> None:
        """Redraw what depends on the time: data age, retry countdown, heartbeat ages."""
        self._update_status()
        self.instances_table.refresh_live()

    # Showing data ----------------------------------------------------------

    def show_snapshot(self, snapshot: RegistrySnapshot) -> None:
        """Bring both tables in line with ``snapshot`` by row key (one diff-refresh)."""
        self.snapshot = snapshot
        self.state.services = len(snapshot.services)
        self.state.instances = len(snapshot.instances)
        services: dict[str, ServiceSummary] = {ALL_SERVICES: all_services_row(snapshot.services)}
        services.update((s.name, s) for s in snapshot.services)
        self.services_table.sync(services, service_cells, service_order)
        self._instances = {instance.key: instance for instance in snapshot.instances}
        # The selected service may have gone; the cursor then sits on a neighbour.
        self._select(self.services_table.cursor_key)
        self._sync_instances()

    def _select(self, key: str | None) -> bool:
        service = None if key in (None, ALL_SERVICES) else key
        if service == self.selected_service:
            return False
        self.selected_service = service
        return True

    def _sync_instances(self) -> None:
        service, needle = self.selected_service, self.filter_text
        shown = self._instances
        if service is not None or needle:
            shown = {
                key: instance
                for key, instance in self._instances.items()
                if matches(instance, service, needle)
            }
        now = self.clock()
        self.instances_table.sync(
            shown,
            lambda instance: instance_cells(instance, now),
            INSTANCE_SORTS[self.sort_index].key,
        )
        self._update_titles()

    def _update_titles(self) -> None:
        table = self.instances_table
        parts = [
            f"Instances of {self.selected_service}" if self.selected_service else "All instances",
            f"sort: {INSTANCE_SORTS[self.sort_index].label}",
        ]
        if self.filter_text:
            parts.append(f"filter: {self.filter_text!r}")
        self.instances_box.border_title = " · ".join(parts)
        shown, total = table.row_count, len(self._instances)
        subtitle = f"{shown} of {counted(total, 'instance')}"
        if shown == total:
            subtitle = counted(total, "instance")
        self.instances_box.border_subtitle = subtitle
        if self.snapshot is None:
            message = "Waiting for the router…"
        elif not self._instances:
            message = (
                "No instances registered. Services appear here once they register "
                "over NATS (ipc.service.register)."
            )
        else:
            message = "No instances match the selection or filter."
        self._empty.update(message)
        self._empty.set_class(table.row_count == 0, "-shown")

    def _update_status(self) -> None:
        now = self.clock()
        self._status.update(status_line(self.state, now))
        text = banner_text(self.state, now)
        self._banner.update(text or "")
        self._banner.set_class(text is not None, "-shown")
        for box in (self.services_box, self.instances_box):
            box.set_class(self.state.stale, "-stale")

    # Events ----------------------------------------------------------------

    @on(DataTable.RowHighlighted, "#services")
    def _service_highlighted(self) -> None:
        # The event's row key may be from before a re-sort; the cursor is current.
        if self._select(self.services_table.cursor_key):
            self._sync_instances()
            self.instances_table.move_cursor(row=0)

    @on(DataTable.RowSelected, "#services")
    def _service_selected(self) -> None:
        self.instances_table.focus()

    @on(DataTable.RowSelected, "#instances")
    def _instance_selected(self) -> None:
        self.action_detail()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value.strip()
        self._sync_instances()

    @on(FilterInput.Closed)
    def _filter_closed(self) -> None:
        self._filter.remove_class("-shown")
        self.instances_table.focus()

    # Actions ---------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Keys that act on the tables do nothing while a panel covers them."""
        covered = self.screen is not self.screen_stack[0]
        return not (covered and action in _TABLE_ACTIONS)

    def action_filter(self) -> None:
        """Open the filter line."""
        self._filter.add_class("-shown")
        # Focus at once, not via the deferred ``focus()``: the keys typed right after
        # ``/`` are next in line and must reach the filter, not the table (``s`` sorts).
        self.screen.set_focus(self._filter)

    def action_cycle_sort(self) -> None:
        """Next instance sort order; the cursor stays on its instance."""
        self.sort_index = (self.sort_index + 1) % len(INSTANCE_SORTS)
        self._sync_instances()

    def action_detail(self) -> None:
        """Open the detail panel of the instance under the cursor."""
        instance = self.instances_table.cursor_model
        if instance is not None:
            self.push_screen(DetailScreen(instance, self.clock()))

    def action_refresh(self) -> None:
        """Poll now (retries at once after an error)."""
        self.poll()

    def action_toggle_pause(self) -> None:
        """Stop or restart polling; resuming polls at once."""
        self.state.paused = not self.state.paused
        if self.state.paused:
            self._cancel_timer()
            self.state.next_poll_at = None
            self._update_status()
        else:
            self.poll()

    def action_help(self) -> None:
        """Show the keys."""
        self.push_screen(HelpScreen())
