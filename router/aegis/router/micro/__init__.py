"""NATS micro (ADR-32): the router's own $SRV control, and discovery of micro services."""
