"""The app: polls the router, backs off while it is down, and shows the dashboard."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import ClassVar

from textual import work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.timer import Timer

from .api_client import ApiClient, ApiError, retry_delay
from .dashboard import DashboardScreen
from .event_follower import EventFollower
from .formatting import Clock, system_clock
from .help_screen import HelpScreen
from .status import PollState

EVENTS_RETRY_SECONDS = 1.0  # after the stream ends cleanly; doubles while it fails


class ConsoleApp(App[None]):
    """Live view of an AegisIPC router's registry, read from its admin REST API.

    The app owns the connection: the HTTP client, the poll state and the timer.
    It pushes one ``DashboardScreen``, which shows each poll's result, and
    follows the router's change events into its events pane (``events=False``: not).
    After the first poll that works it asks the router which token it holds
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
        self.dashboard = DashboardScreen(self.state, clock, self.client, self.action_refresh)
        self.follower = EventFollower(
            self.client,
            self.dashboard.events_pane,
            clock,
            reload=self.action_refresh,
            delay=self.events_retry_delay,
        )
        self.follow_events = events
        # Ask the router who our token is (GET /whoami) until it has answered.
        self.identify = identify
        self._timer: Timer | None = None

    async def on_mount(self) -> None:
        """Show the dashboard, then start polling (its tables must exist first)."""
        await self.push_screen(self.dashboard)
        self.poll()
        if self.follow_events:
            self.run_worker(self.follower.run(), group="events", exclusive=True)
        else:
            self.dashboard.events_pane.set_source("not followed")

    async def on_unmount(self) -> None:
        """Close the HTTP connections."""
        await self.client.aclose()

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
            self.state.services = len(snapshot.services)
            self.state.instances = len(snapshot.instances)
            previous = self.dashboard.snapshot
            self.dashboard.show_snapshot(snapshot)
            self.follower.polled(previous, snapshot)
            if self.identify:
                await self._identify()
        self._schedule_next()
        self.dashboard.refresh_clock_texts()

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
        """Poll now (retries at once after an error)."""
        self.poll()

    def action_toggle_pause(self) -> None:
        """Stop or restart polling; resuming polls at once."""
        self.state.paused = not self.state.paused
        if self.state.paused:
            self._cancel_timer()
            self.state.next_poll_at = None
            self.dashboard.refresh_status()
        else:
            self.poll()
