"""The dashboard screen: status line, error banner, services over instances, filter line."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static

from .api_client import ApiClient, ApiError
from .detail_screen import DetailScreen
from .events_pane import EventsPane
from .filter_input import FilterInput
from .formatting import Clock, counted
from .instances_table import InstancesTable
from .listing import Listing
from .live_registry import LiveRegistry
from .loader import Loader
from .models import RegistrySnapshot
from .operator_actions import (
    ERROR_SECONDS,
    MaintenanceTarget,
    OperatorActions,
    instance_target,
    service_target,
)
from .services_table import ServicesTable
from .status import PollState, banner_text, status_line
from .tables import INSTANCE_SORTS

TICK_SECONDS = 1.0


ListingQuery = tuple[str | None, str, int]
"""A listing's selected service (None: all), filter text and sort index."""


class DashboardScreen(Screen[None]):
    """What the router holds, as the console last learned it, and how current that is.

    The app lists and follows changes into ``live`` and keeps ``state``; this screen
    shows them (``show_services``, ``show_listing``, ``refresh_status``) and owns what
    the user chose to see: the selected service, the filter and the sort order. When
    that changes it asks the app for a new listing (``relist``).
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        # Priority, so it acts before the keys typed right after it are handed to the table.
        Binding("slash", "filter", "Filter", key_display="/", priority=True),
        Binding("s", "cycle_sort", "Sort"),
        Binding("d", "deregister", "Deregister"),
        Binding("m", "maintenance", "Maintenance"),
        # With a read token the two above are off (and out of the footer); these say why.
        Binding("d", "refused('deregister instances')", show=False),
        Binding("m", "refused('put instances in or out of maintenance')", show=False),
    ]
    ACTIONS_NEEDING_OPERATOR = frozenset({"deregister", "maintenance"})

    AUTO_FOCUS = "#instances"

    def __init__(
        self,
        state: PollState,
        clock: Clock,
        client: ApiClient,
        after_action: Callable[[], None],
        live: LiveRegistry | None = None,
        relist: Callable[[], None] | None = None,
    ) -> None:
        super().__init__()
        self.actions = OperatorActions(self, client, after_action)
        self.state = state
        self.clock = clock
        self.live = live or LiveRegistry()
        self.loader = Loader(client, self.live)
        self.relist = relist or (lambda: None)
        self.loaded = False
        self.selected_service: str | None = None
        # The selection, filter and sort the table's rows were listed for (a router's
        # pages come a moment after they are asked for).
        self._shown_query: ListingQuery | None = None
        self.filter_text = ""
        self.sort_index = 0
        self.services_table = ServicesTable(id="services")
        self.instances_table = InstancesTable(clock, id="instances")
        self.services_box = Vertical(id="services-box", classes="box")
        self.instances_box = Vertical(id="instances-box", classes="box")
        self.events_pane = EventsPane(id="events")
        self._status = Static(id="status")
        self._banner = Static(id="banner")
        self._empty = Static(id="empty")
        # What each text-bearing part shows now, by name: an unchanged text is not
        # drawn (nor laid out) again (``_changed``).
        self._shown: dict[str, object] = {}
        self._filter = FilterInput(placeholder="filter: instance id substring", id="filter")

    def compose(self) -> ComposeResult:
        """Status line, error banner, services over instances over events, filter, footer."""
        yield self._status
        yield self._banner
        with self.services_box:
            yield self.services_table
        with self.instances_box:
            yield self.instances_table
            yield self._empty
        yield self.events_pane
        yield self._filter
        yield Footer()

    def on_mount(self) -> None:
        """Titles and status before the first poll; ages refresh once a second."""
        self.services_box.border_title = "Services"
        self._update_titles()
        self.refresh_status()
        self.set_interval(TICK_SECONDS, self.refresh_clock_texts)

    # Showing data ----------------------------------------------------------

    def show_snapshot(self, snapshot: RegistrySnapshot) -> None:
        """Everything at once, from a router that does not page: held and sorted here."""
        self.live.local_all = snapshot.by_key()
        self.live.set_services(snapshot.services, None)
        self.show_services()
        self.show_listing(self._local_listing())

    def _local_listing(self) -> Listing:
        return self.live.build(self.selected_service, self.filter_text, self.sort_index)

    def show_services(self) -> None:
        """The services table from the counts as they stand."""
        self.loaded = True
        self.services_table.show(self.live.counts.summaries())
        # The selected service may have gone; the cursor then sits on a neighbour.
        if self._select(self.services_table.selected_service):
            self.request_listing()
        self._update_titles()

    def show_listing(
        self, listing: Listing, *, keep_cursor: bool = True, query: ListingQuery | None = None
    ) -> None:
        """Show ``listing`` in the instances table, listed for ``query`` (default: the
        selection, filter and sort as they are now)."""
        self._shown_query = self.listing_query() if query is None else query
        self.instances_table.show(listing, keep_cursor=keep_cursor)
        self._update_titles()

    def listing_query(self) -> ListingQuery:
        """The selection, filter and sort the user chose."""
        return (self.selected_service, self.filter_text, self.sort_index)

    def listing_changed(self) -> None:
        """Change events moved rows of the listing on screen."""
        self.instances_table.changed()
        self._update_titles()

    def request_listing(self) -> None:
        """The selection, filter or sort changed: list again (here, or by the router)."""
        if self.live.paged:
            self.relist()
        elif self.loaded:
            self.show_listing(self._local_listing(), keep_cursor=True)
        self._update_titles()

    def refresh_status(self) -> None:
        """Redraw the status line and banner from ``state``; mark the boxes stale or not.

        Called for every drawing of change events (10 a second under load), and mostly
        nothing on them has changed: only a changed text is handed to its widget.
        """
        now = self.clock()
        line = status_line(self.state, now)
        if self._changed("status", line):
            self._status.update(line, layout=False)  # one line high whatever it says
        text = banner_text(self.state, now)
        if self._changed("banner", text):
            self._banner.update(text or "")
            self._banner.set_class(text is not None, "-shown")
        for box in (self.services_box, self.instances_box):
            box.set_class(self.state.stale, "-stale")

    def _changed(self, part: str, text: object) -> bool:
        """Whether ``part`` is to show another text than it does (and note that it will)."""
        if part in self._shown and self._shown[part] == text:
            return False
        self._shown[part] = text
        return True

    def refresh_clock_texts(self) -> None:
        """Redraw what depends on the time: data age, retry countdown, heartbeat ages."""
        self.refresh_status()
        self.instances_table.refresh_live()

    def _select(self, service: str | None) -> bool:
        if service == self.selected_service:
            return False
        self.selected_service = service
        return True

    def _update_titles(self) -> None:
        parts = [
            f"Instances of {self.selected_service}" if self.selected_service else "All instances",
            f"sort: {INSTANCE_SORTS[self.sort_index].label}",
        ]
        if self.filter_text:
            parts.append(f"filter: {self.filter_text!r}")
        if self.live.sort_note:
            parts.append(self.live.sort_note)
        title = " · ".join(parts)
        if self._changed("title", title):
            self.instances_box.border_title = title  # a border title repaints the whole box
        shown, total = self.instances_table.row_count, self.live.counts.instances
        subtitle = f"{shown:,} of {counted(total, 'instance')}"
        if shown == total:
            subtitle = counted(total, "instance")
        if self.live.paged and self._shown_query != self.listing_query():
            # The rows are still those of the last selection or filter: say so, rather
            # than give their count under the new filter's title.
            subtitle = "listing…"
        if self._changed("subtitle", subtitle):
            self.instances_box.border_subtitle = subtitle
        if not self.loaded:
            message = "Waiting for the router…"
        elif not total:
            message = (
                "No instances registered. Services appear here once they register "
                "over NATS (ipc.service.register)."
            )
        else:
            message = "No instances match the selection or filter."
        if self._changed("empty", message):
            self._empty.update(message)
        self._empty.set_class(not self.loaded or shown == 0, "-shown")

    # Events ----------------------------------------------------------------

    @on(DataTable.RowHighlighted, "#services")
    def _service_highlighted(self) -> None:
        # The event's row key may be from before a re-sort; the cursor is current.
        if self._select(self.services_table.selected_service):
            self.request_listing()
            self.instances_table.move_cursor(row=0)

    @on(DataTable.RowSelected, "#services")
    def _service_selected(self) -> None:
        self.instances_table.focus()

    @on(InstancesTable.Selected)
    def _instance_selected(self) -> None:
        self.action_detail()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value.strip()
        self.request_listing()

    @on(FilterInput.Closed)
    def _filter_closed(self) -> None:
        self._filter.remove_class("-shown")
        self.instances_table.focus()

    # Actions ---------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Under a panel these keys do nothing; say so by leaving them out of the footer.

        A read token is offered no action: ``d`` and ``m`` then say why instead.
        """
        if not self.is_active:
            return False
        who = self.state.identity
        read_only = who is not None and not who.may_act
        if action in self.ACTIONS_NEEDING_OPERATOR:
            return not read_only
        if action == "refused":
            return read_only
        return True

    def action_refused(self, what: str) -> None:
        """Say why a read token cannot act; no request is sent."""
        who = self.state.identity
        assert who is not None  # only bound once the router named a read token
        self.notify(
            f"This console's token {who.name!r} has role {who.role}: only an operator "
            f"token may {what}. Start the console with one (--token / AEGIS_CONSOLE_TOKEN).",
            title="Not allowed",
            severity="warning",
        )

    def action_filter(self) -> None:
        """Open the filter line."""
        self._filter.add_class("-shown")
        # Focus at once, not via the deferred ``focus()``: the keys typed right after
        # ``/`` are next in line and must reach the filter, not the table (``s`` sorts).
        self.set_focus(self._filter)

    def action_cycle_sort(self) -> None:
        """Next instance sort order; the cursor stays on its instance."""
        self.sort_index = (self.sort_index + 1) % len(INSTANCE_SORTS)
        self.request_listing()

    def action_detail(self) -> None:
        """Open the detail panel of the instance under the cursor."""
        instance = self.instances_table.cursor_model
        if instance is not None:
            self.app.push_screen(DetailScreen(instance, self.clock()))

    def action_deregister(self) -> None:
        """Deregister the instance under the cursor, once confirmed."""
        instance = self.instances_table.cursor_model
        if self.focused is not self.instances_table or instance is None:
            self.notify("d deregisters an instance: pick one in the instances table (tab).")
            return
        self.actions.deregister(instance)

    def action_maintenance(self) -> None:
        """Toggle maintenance on the selected service (services table) or instance."""
        if self.focused is self.services_table:
            service = self.selected_service
            if service is None:
                self.notify("m acts on one service: pick a service, not all of them.")
                return
            if self.live.paged:
                self.run_worker(self._service_maintenance(service), group="action")
            else:
                target = service_target(service, self.live.local_all.values())
                self.actions.toggle_maintenance(target)
            return
        instance = self.instances_table.cursor_model
        if instance is None:
            self.notify("No instance selected.")
            return
        self.actions.toggle_maintenance(instance_target(instance))

    async def _service_maintenance(self, service: str) -> None:
        """Ask the router whether the service is drained, then toggle it."""
        try:
            drained = await self.loader.service_drained(service)
        except ApiError as exc:
            self.notify(
                f"Could not read {service}: {exc.reason}",
                title="Failed",
                severity="error",
                timeout=ERROR_SECONDS,
            )
            return
        self.actions.toggle_maintenance(MaintenanceTarget(service, None, drained))
