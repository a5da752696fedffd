"""The instances table: one row per instance, with ages that follow the clock."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from textual.binding import Binding, BindingType

from .formatting import Clock
from .keyed_table import KeyedTable
from .models import InstanceInfo
from .tables import HEARTBEAT_COLUMN, INSTANCE_COLUMNS, SortOrder, heartbeat_cell, instance_cells


class InstancesTable(KeyedTable[InstanceInfo]):
    """Instances of the selected service (or all); enter opens the detail panel."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select_cursor", "Detail"),
    ]

    def __init__(self, clock: Clock, *, id: str | None = None) -> None:
        super().__init__(INSTANCE_COLUMNS, id=id)
        self.clock = clock
        self.set_live_column(HEARTBEAT_COLUMN, lambda instance: heartbeat_cell(instance, clock()))

    def show(self, instances: Mapping[str, InstanceInfo], sort: SortOrder) -> None:
        """Bring the rows in line with ``instances`` (by row key), in ``sort`` order."""
        now = self.clock()
        self.sync(instances, lambda instance: instance_cells(instance, now), sort.key)
