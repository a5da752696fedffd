"""Chaos harness: many faults at once, a recorded history, a checker (issue 14)."""
