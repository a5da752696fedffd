"""The ``/`` filter line under the instances."""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import Input


class FilterInput(Input):
    """The ``/`` filter line: enter keeps the filter, escape clears it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "clear_filter", "Clear filter"),
    ]

    class Closed(Message):
        """The user is done with the filter line (enter or escape)."""

    def action_clear_filter(self) -> None:
        """Empty the filter and close the line."""
        self.value = ""
        self.post_message(self.Closed())

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter closes the line and keeps the filter."""
        event.stop()
        self.post_message(self.Closed())
