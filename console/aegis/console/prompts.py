"""The modal questions an operator action asks first: are you sure, and why."""

from __future__ import annotations

from typing import ClassVar, Final

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

MAX_REASON: Final = 256
"""The router's limit on a maintenance reason."""


class ConfirmScreen(ModalScreen[bool]):
    """A yes/no question; dismissed with ``True`` only on an explicit yes.

    Cancel has the focus, so a stray enter does nothing harmful.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, title: str, question: Text | str, confirm_label: str) -> None:
        super().__init__()
        self.title_text = title
        self.question = question
        self.confirm_label = confirm_label

    def compose(self) -> ComposeResult:
        """The question over its two buttons."""
        with Vertical(id="confirm", classes="prompt") as box:
            box.border_title = self.title_text
            box.border_subtitle = "y: yes · n/escape: no"
            yield Static(self.question, id="confirm-question")
            with Horizontal(classes="buttons"):
                yield Button(self.confirm_label, variant="error", id="yes")
                yield Button("Cancel", id="no")

    def on_mount(self) -> None:
        """The safe answer has the focus."""
        self.query_one("#no", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        """Close with the answer."""
        self.dismiss(yes)


class ReasonScreen(ModalScreen[str | None]):
    """Asks for a maintenance reason; dismissed with it, or ``None`` on escape."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, question: Text | str) -> None:
        super().__init__()
        self.title_text = title
        self.question = question

    def compose(self) -> ComposeResult:
        """The question, the input line and a hint that turns into the error."""
        with Vertical(id="reason", classes="prompt") as box:
            box.border_title = self.title_text
            box.border_subtitle = "enter: apply · escape: cancel"
            yield Static(self.question, id="reason-question")
            yield Input(
                placeholder="reason, e.g. kernel upgrade",
                max_length=MAX_REASON,
                id="reason-input",
            )
            yield Static(
                f"1 to {MAX_REASON} characters, shown to other operators. The mark stays "
                "through restarts of the instance until an operator clears it.",
                id="hint",
            )

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        reason = event.value.strip()
        if reason:
            self.dismiss(reason)
            return
        hint = self.query_one("#hint", Static)
        hint.update("A reason is required (escape cancels).")
        hint.add_class("-error")

    def action_cancel(self) -> None:
        """Close without a reason: nothing is changed."""
        self.dismiss(None)
