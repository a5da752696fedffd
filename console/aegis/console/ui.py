"""The app: lists the router once, follows its change events, resyncs when it must, and
shows the dashboard. An older router without paging is polled whole, as before."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import ClassVar

from textual import work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.timer import Timer

from .api_client import ApiClient, ApiError, InstancePage, retry_delay
from .change_events import ChangeRecord
from .dashboard import DashboardScreen
from .event_follower import EventFollower
from .formatting import Clock, system_clock
from .help_screen import HelpScreen
from .instances_table import MARGIN, InstancesTable
from .listing import InstanceQuery, Listing, LocalSegment, change_of
from .live_registry import LiveRegistry
from .models import RegistrySnapshot
from .status import PollState

EVENTS_RETRY_SECONDS = 1.0  # after the stream ends cleanly; doubles while it fails
QUIET_SECONDS = 30.0
"""With the stream live and no event for this long, the next poll lists everything again."""
DRAW_SECONDS = 0.1
"""Change events are drawn together, at most this often."""


class ConsoleApp(App[None]):
    """Live view of an AegisIPC router's registry, read from its admin REST API.

    The app owns the connection: the HTTP client, the poll state and the timer.
    It lists the services and the instances on screen, then follows the router's
    change events from the listing's version into ``live`` and the events pane
    (``events=False``: not). While the stream is live a poll only re-reads the
    rows on screen (their heartbeat ages); it lists everything again after a
    ``reset``, a reconnect, a quiet ``QUIET_SECONDS``, or ``r``. A router that
    does not page is polled whole every ``interval``, as before.
    After the first listing that works it asks the router which token it holds
    (``identify=False``: not), so a read token is shown and offered no actions.
    """

    TITLE = "aegis-console"
    # Absolute: Textual resolves a relative CSS_PATH beside the file of the
    # instance's class, which for a subclass (tests, benchmark) is elsewhere.
    CSS_PATH = Path(__file__).with_name("console.tcss")

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "refresh", "Refresh"),
        Binding("p", "toggle_pause", "Pause/resume"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(
        self,
        api_url: str,
        *,
        interval: float = 2.0,
        token: str | None = None,
        clock: Clock = system_clock,
        client: ApiClient | None = None,
        events: bool = True,
        identify: bool = True,
    ) -> None:
        super().__init__()
        self.clock = clock
        self.client = client or ApiClient(api_url, token=token, clock=clock)
        self.state = PollState(api_url=self.client.base_url, interval=interval)
        self.live = LiveRegistry()
        self.dashboard = DashboardScreen(
            self.state, clock, self.client, self.action_refresh, self.live, self.relist
        )
        self.loader = self.dashboard.loader
        self.follower = EventFollower(
            self.client,
            self.dashboard.events_pane,
            clock,
            reload=self.action_refresh,
            delay=self.events_retry_delay,
            on_change=self.take_change,
            on_stream=self._stream_state,
        )
        self.follow_events = events
        # Ask the router who our token is (GET /whoami) until it has answered.
        self.identify = identify
        self._timer: Timer | None = None
        self._following = False
        self._snapshot: RegistrySnapshot | None = None
        self._first_page: InstancePage | None = None
        self._full = True
        self._listed_at: datetime | None = None
        self._draw_due = False
        self._services_dirty = False
        self._listing_dirty = False

    async def on_mount(self) -> None:
        """Show the dashboard, then list (its tables must exist first); events follow."""
        await self.push_screen(self.dashboard)
        self.poll()
        if not self.follow_events:
            self.dashboard.events_pane.set_source("not followed")

    def _follow(self) -> None:
        """Start following events once, after the first listing (so from its version)."""
        if self.follow_events and not self._following:
            self._following = True
            self.run_worker(self.follower.run(), group="events", exclusive=True)

    async def on_unmount(self) -> None:
        """Close the HTTP connections."""
        await self.client.aclose()

    @work(exclusive=True, group="poll")
    async def poll(self) -> None:
        """List (or re-read the rows on screen), show the result, and schedule the next poll.

        Exclusive: starting a poll (``r``) cancels one in flight, so polls never overlap.
        """
        self._cancel_timer()
        try:
            await self._poll_once()
        except ApiError as exc:
            self.state.error = exc
            self.state.failures += 1
        else:
            self.state.error = None
            self.state.failures = 0
            self.state.last_success = self.clock()
            if self.identify:
                await self._identify()
        self._follow()
        self._schedule_next()
        self.dashboard.refresh_clock_texts()

    async def _poll_once(self) -> None:
        if self.live.paged is False:
            self._show_snapshot(await self.client.fetch())
            return
        if self._needs_full():
            version = await self.loader.services()
            if self.live.paged is None:
                page = await self.loader.first_page()
                if not page.paged:
                    summaries = self.live.counts.summaries()
                    self._show_snapshot(RegistrySnapshot(summaries, page.instances, self.clock()))
                    return
                self._first_page = page
                self.follower.last_event_id = version
            self._full = False
            self._listed_at = self.clock()
            self.dashboard.show_services()
        self._count()
        await self._relist_now()

    def _needs_full(self) -> bool:
        if self._full or not self.state.live_stream or self._listed_at is None:
            return True
        quiet_since = max(self._listed_at, self.state.last_event_at or self._listed_at)
        return (self.clock() - quiet_since).total_seconds() >= QUIET_SECONDS

    def _show_snapshot(self, snapshot: RegistrySnapshot) -> None:
        """A router without paging: the whole registry, as every poll before list + watch."""
        previous = self._snapshot
        self._snapshot = snapshot
        self.dashboard.show_snapshot(snapshot)
        self._count()
        self.follower.polled(previous, snapshot)

    def _count(self) -> None:
        self.state.services = len(self.live.counts.by_name)
        self.state.instances = self.live.counts.instances

    def relist(self) -> None:
        """The selection, filter or sort changed: list what is on screen again."""
        self._relist()

    @work(exclusive=True, group="listing")
    async def _relist(self) -> None:
        try:
            await self._relist_now()
        except ApiError as exc:
            self.notify(f"Could not list instances: {exc.reason}", severity="error")

    async def _relist_now(self) -> None:
        dashboard = self.dashboard
        service, needle, sort = (
            dashboard.selected_service,
            dashboard.filter_text,
            dashboard.sort_index,
        )
        listing = self.live.build(service, needle, sort, local_rows=True)
        segment = listing.segments[0] if listing.segments else None
        query = InstanceQuery(service, needle)
        if isinstance(segment, LocalSegment) and not await self.loader.local(segment, query):
            listing = self.live.build(service, needle, sort)
        if self._first_page is not None:
            self.loader.seed(listing, self._first_page)
            self._first_page = None
        await self.loader.fill(listing, *self._window())
        if listing is self.live.listing:
            dashboard.show_listing(listing, query=(service, needle, sort))

    def _window(self) -> tuple[int, int]:
        table = self.dashboard.instances_table
        top = table.top_row
        return max(0, top - MARGIN), top + table.visible_rows + MARGIN

    def on_instances_table_window_wanted(self, message: InstancesTable.WindowWanted) -> None:
        """Rows scrolled into view: fetch the pages they are on."""
        if self.live.paged:
            self._fill(self.live.listing, message.low, message.high)

    @work(exclusive=True, group="window")
    async def _fill(self, listing: Listing, low: int, high: int) -> None:
        try:
            fetched = await self.loader.fill(listing, low, high)
        except ApiError as exc:
            self.notify(f"Could not list instances: {exc.reason}", severity="error")
            return
        if fetched and listing is self.dashboard.instances_table.listing:
            self.dashboard.listing_changed()

    # Change events -----------------------------------------------------------

    def take_change(self, record: ChangeRecord, event_id: str | None) -> None:
        """One change event from the stream: into the counts and the listing, drawn soon."""
        self.state.last_event_at = self.clock()
        if not self.live.paged:
            return  # a router without paging: the next poll shows it
        sequence = self.live.sequence(event_id)
        change = change_of(record.kind, record.instance, record.previous_status, sequence)
        services, listing = self.live.apply(change)
        self._services_dirty |= services
        self._listing_dirty |= listing
        if not self._draw_due:
            self._draw_due = True
            self.set_timer(DRAW_SECONDS, self._draw_changes)

    def _draw_changes(self) -> None:
        self._draw_due = False
        if self._services_dirty:
            self._services_dirty = False
            self._count()
            self.dashboard.show_services()
        if self._listing_dirty:
            self._listing_dirty = False
            if self.live.listing is self.dashboard.instances_table.listing:
                self.dashboard.listing_changed()
        self.dashboard.refresh_status()

    def _stream_state(self, live: bool, resumed: bool) -> None:
        """The stream opened (``resumed``: again, after a break) or broke."""
        self.state.live_stream = live and bool(self.live.paged)
        if live and resumed and self.live.paged:
            self.resync()
        self.dashboard.refresh_status()

    def resync(self) -> None:
        """List everything again (after a ``reset`` or a reconnect)."""
        self._full = True
        self.poll()

    async def _identify(self) -> None:
        """Learn the token's name and role; an older router (404) is asked no more."""
        try:
            self.state.identity = await self.client.whoami()
        except ApiError as exc:
            if exc.status == 404:
                self.identify = False  # no /whoami: every action stays offered, as before
            return  # else the next poll asks again
        self.identify = False
        self.dashboard.refresh_bindings()

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

    def events_retry_delay(self, failures: int) -> float:
        """Seconds before reconnecting to the event stream (tests override this)."""
        return retry_delay(failures, EVENTS_RETRY_SECONDS)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Help opens from the dashboard only, not over the detail panel."""
        return action != "help" or self.screen is self.dashboard

    def action_help(self) -> None:
        """Show the keys."""
        self.push_screen(HelpScreen())

    def action_refresh(self) -> None:
        """List everything again now (retries at once after an error)."""
        self.resync()

    def action_toggle_pause(self) -> None:
        """Stop or restart polling; resuming polls at once."""
        self.state.paused = not self.state.paused
        if self.state.paused:
            self._cancel_timer()
            self.state.next_poll_at = None
            self.dashboard.refresh_status()
        else:
            self.poll()
