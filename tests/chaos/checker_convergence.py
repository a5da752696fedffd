"""The convergence rule: after the faults, every router's REST view is the same.

Views agree when they list the same (service, instance, status). The
routers are polled one by one, so while the registry still changes (an
instance silent at the last fault expires during the quiet period) two
views may differ for a moment only because one was read before a change and
the other after: a disagreement no longer than ``propagation`` is that, and
does not count.
"""

from __future__ import annotations

from tests.chaos.checker_model import History, Key, Shot, Violation


def differences(latest: dict[str, Shot], most: int = 5) -> str:
    """The first few instances the routers' views disagree on, for a human."""
    keys: set[Key] = set().union(*(shot.listing for shot in latest.values()))
    lines = []
    for key in sorted(keys):
        seen = {router: shot.listing.get(key, "absent") for router, shot in latest.items()}
        if len(set(seen.values())) > 1:
            lines.append(f"{key[0]}/{key[1]}: " + ", ".join(f"{r} {s}" for r, s in seen.items()))
    more = f"; and {len(lines) - most} more" if len(lines) > most else ""
    return "; ".join(lines[:most]) + more


def _window(history: History, since: float) -> list[tuple[str, Shot]]:
    """Each router's views from ``since`` to the final round, by completion time.

    The harness marks the round it reads at the end of the quiet period
    ``final``; views read later (while the clients leave) are not compared.
    """
    finals = [
        shot.hi for shots in history.shots.values() for shot in shots if shot.view.get("final")
    ]
    until = max(finals, default=float("inf"))
    pairs = [
        (router, shot)
        for router in history.routers
        for shot in history.shots.get(router, [])
        if since <= shot.lo and shot.hi <= until
    ]
    return sorted(pairs, key=lambda pair: pair[1].hi)


def convergence(history: History) -> tuple[list[Violation], float | None]:
    """After the quiet period begins, the routers agree within the bound, and at the end.

    The convergence time runs from ``end.quiet_from`` (else the last fault)
    to the view with which every router's latest view agreed, never to
    disagree again for longer than ``propagation``. A violation: no end
    record, a router with no readable view, last views that differ, or a
    convergence time over the bound.
    """
    if history.end is None:
        return [Violation("convergence", "the history has no end record: the run broke off")], None
    since = float(
        history.end.get("quiet_from") or history.end.get("last_fault") or history.meta["t"]
    )
    flicker = history.bounds.propagation
    latest: dict[str, Shot] = {}
    agreed_at: float | None = None  # since when they agree for good, as far as seen
    split_at: float | None = since  # since when they disagree, if they do
    for router, shot in _window(history, since):
        latest[router] = shot
        states = {frozenset(s.listing.items()) for s in latest.values()}
        if len(latest) < len(history.routers) or len(states) > 1:
            split_at = shot.hi if split_at is None else split_at
        elif split_at is not None:
            # Agreeing again: a long disagreement (or the first) resets the clock.
            if agreed_at is None or shot.hi - split_at > flicker:
                agreed_at = shot.hi
            split_at = None
    missing = [router for router in history.routers if router not in latest]
    last_views = [shot.view for shot in latest.values()]
    if missing:
        message = f"no readable view of {', '.join(missing)} after the quiet period began"
        return [Violation("convergence", message, last_views)], None
    if split_at is not None or agreed_at is None:
        message = f"the routers' last views differ: {differences(latest)}"
        return [Violation("convergence", message, last_views)], None
    took = agreed_at - since
    bound = history.bounds.convergence_bound
    if took > bound:
        message = (
            f"the routers' views agreed only {took:.1f} s after the quiet began (bound {bound} s)"
        )
        return [Violation("convergence", message, last_views)], took
    return [], took
