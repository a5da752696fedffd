"""How fast the sweep may move instances on: a mass transition slows down, and says so.

When a large share of a router's instances fall due at once, the likelier
cause is the router itself (a stall, a lost link) rather than the fleet, as
Eureka's self-preservation reasons. Eureka then stops expiring, silently, and
its users complain of it. Here a mass transition goes on, at a bounded rate,
and loudly: the sweep spends one token per instance it moves on, from a bucket
refilled at ``max(floor, share x held)`` per second. Keys past the budget wait
for the next sweep; the registry logs ``mass_expiry_slowed`` when that starts
and ``mass_expiry_caught_up`` when it ends, and ``aegis_expiry_slowed`` is 1
meanwhile, for alerts and the console.

The rate is a fifth of the instances held per second, and at least 10,000
(the bucket holds a second's worth): the budget lets a silence of 20,000
instances through in about a second and of 100,000 in about four, so it no
longer holds a mass expiry back (at 10 % a second it alone kept 20,000 waiting
10 s); what the store and the CPU can write is the limit now. A router that
wrongly finds a large fleet due moves a fifth of it a second, slowed and said.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ExpiryBudget:
    """A token bucket: ``take`` says whether one more instance may move on now."""

    share: float = 0.2  # of the instances held, per second
    floor: float = 10_000.0  # per second, whatever the share
    _tokens: float = field(default=-1.0, init=False)  # a full bucket on first use
    _at: float = field(default=0.0, init=False)

    def rate(self, held: int) -> float:
        """Transitions per second allowed with ``held`` instances."""
        return max(self.floor, self.share * held)

    def take(self, now: float, held: int) -> bool:
        """Spend one token at ``now`` (seconds); False when the bucket is empty."""
        rate = self.rate(held)
        if self._tokens < 0:
            self._tokens = rate
        else:
            self._tokens = min(rate, self._tokens + (now - self._at) * rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True
