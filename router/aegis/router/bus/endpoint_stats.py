"""What one NATS subject's requests cost: counted where they are served, read by $SRV.STATS."""

from __future__ import annotations

from dataclasses import dataclass


# Not frozen, and plain integers: the responder adds to them on every request,
# and an attribute add is the cheapest update Python has.
@dataclass(slots=True)
class EndpointStats:
    """Requests served on one subject since the router started.

    ``num_errors`` counts requests the router could not answer (the reply
    failed to go out); a registry error reply (404, 409, ...) is an answer.
    """

    num_requests: int = 0
    num_errors: int = 0
    processing_time: int = 0  # nanoseconds, summed over all requests
    last_error: str = ""

    @property
    def average_processing_time(self) -> int:
        """Mean nanoseconds per request; 0 before the first."""
        return self.processing_time // self.num_requests if self.num_requests else 0

    def failed(self, exc: BaseException) -> None:
        """Count a request that got no answer, and remember why."""
        self.num_errors += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
