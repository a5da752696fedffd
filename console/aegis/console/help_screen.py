"""The help panel: the keys and what they do."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import ModalScreen
from textual.widgets import Static

HELP = """\
[b]aegis-console[/b] lists the router's registry and follows its change events.

[b]/[/b]       filter instances by instance id (substring; the router filters)
[b]s[/b]       cycle the instance sort: service, status, heartbeat age, registration
[b]enter[/b]   on a service: show its instances; on an instance: its detail and metadata
[b]d[/b]       deregister the instance under the cursor (asks first)
[b]m[/b]       maintenance on or off: on an instance, or (services table) every live
        instance of the service; putting it in asks for a reason
[b]r[/b]       list everything again now (also retries at once after an error)
[b]p[/b]       pause or resume polling (changes still arrive while the stream is live)
[b]tab[/b]     move between the services and instances tables
[b]?[/b]       this help
[b]q[/b]       quit

Statuses: [bold green]ONLINE[/] [bold yellow]UNHEALTHY[/] [dim red]OFFLINE[/]
Marks: [bold magenta]maint[/] in maintenance (left out of discovery), [cyan]micro[/] a NATS
micro service the router found on the bus. d and m need an operator token
(--token / AEGIS_CONSOLE_TOKEN); the status line shows the token's name and role.
Recent events (bottom pane, newest first) follow the router's event stream.
When the router cannot be reached the last data stays on screen, marked stale,
and polling retries with growing pauses (at most 30 s apart).
The status line: totals, "live" while following the event stream, last event age."""


class HelpScreen(ModalScreen[None]):
    """The keys and what they do; escape or ? closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss", "Close"),
        Binding("question_mark", "dismiss", "Close", show=False, key_display="?"),
    ]

    def compose(self) -> ComposeResult:
        """The help text in a framed box."""
        help_box = Static(HELP, id="help")
        help_box.border_title = "Help"
        yield help_box
