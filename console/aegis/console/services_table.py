"""The services table: one row per service under an "All services" row."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from textual.binding import Binding, BindingType

from .keyed_table import KeyedTable
from .models import ServiceSummary
from .tables import ALL_SERVICES, SERVICE_COLUMNS, all_services_row, service_cells, service_order


class ServicesTable(KeyedTable[ServiceSummary]):
    """Services with their counts by status; the row under the cursor picks the instances shown."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select_cursor", "Show instances"),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(SERVICE_COLUMNS, id=id)

    @property
    def selected_service(self) -> str | None:
        """The service under the cursor; ``None`` on "All services" or when empty."""
        key = self.cursor_key
        return None if key in (None, ALL_SERVICES) else key

    def show(self, services: Iterable[ServiceSummary]) -> None:
        """Bring the rows in line with ``services``, totals row first, by row key."""
        summaries = tuple(services)
        rows = {ALL_SERVICES: all_services_row(summaries)}
        rows.update((service.name, service) for service in summaries)
        self.sync(rows, service_cells, service_order)
