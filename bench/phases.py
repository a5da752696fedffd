"""What a router process spends its core on, window by window (py-spy).

A sampler records the router with ``py-spy record`` in back-to-back windows of
a few seconds each; every sample's stack is put in one category (the first
rule below that matches it), so a table per window shows how the work shifts
from registrations to first heartbeats, steady heartbeats, transitions and
their writes, recoveries and sweeps. Shares are of the router's busy samples
(py-spy does not sample a thread blocked in ``epoll``), so a window's share
times its CPU figure is the core it took.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

# (category, pattern on the whole stack, innermost frame last): first match wins. Store
# writes are counted again, across categories, as their own column.
CATEGORIES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("sweeps, transitions", re.compile(r"sweeper\.py|\(sweep |\b_expire\b|expiry_budget")),
    ("deferred recoveries, refreshes", re.compile(r"recoveries\.py")),
    ("deregistrations", re.compile(r"\.deregister \(")),
    # Before registrations: a heartbeat the fast lane declined is served by the same
    # ``serve`` (admission.py) as a registration, but not through its lane.
    ("heartbeats", re.compile(r"heartbeat|answer_now|steady")),
    ("registrations", re.compile(r"\.register \(|Lane\._work")),
    ("REST, probes", re.compile(r"router/rest/|\(sanic/(?:http|response|request)|handle_request")),
    ("membership, leases", re.compile(r"router/leases/")),
    ("store watch (reading the bucket)", re.compile(r"kv_watch\.py|nats/js/kv\.py|watch")),
    ("NATS client I/O", re.compile(r"\(nats/aio/|\(nats/protocol/|asyncio/streams")),
    ("heap, GC", re.compile(r"heap\.py|\bgc\b")),
)
OTHER = "event loop, other"
# A sample whose innermost frame is the event loop's own run loop is its wait in epoll
# (py-spy's idle detection misses it): counted apart, not as work.
WAITING = re.compile(r"_run_server_forever \([^;]*$|run_forever \([^;]*$")
STORE_WRITE = re.compile(r"jetstream\.py.*\b(?:create|update|put|write|compare_and_set)")
NAMES = [name for name, _ in CATEGORIES] + [OTHER]


def category(stack: str) -> str:
    """The category of one sample's stack (frames joined by ``;``, outermost first)."""
    for name, pattern in CATEGORIES:
        if pattern.search(stack):
            return name
    return OTHER


@dataclass
class Window:
    """One py-spy window: when it started (monotonic), its samples by category."""

    started: float
    seconds: float
    samples: int = 0
    by_category: Counter[str] = field(default_factory=Counter)
    store_writes: int = 0
    waiting: int = 0


def read_window(raw: Path, started: float, seconds: float) -> Window:
    """Parse one ``py-spy record -f raw`` file (``stack count`` per line)."""
    window = Window(started, seconds)
    if not raw.exists():
        return window
    for text in raw.read_text().splitlines():
        stack, _, count = text.rpartition(" ")
        if not count.isdigit():
            continue
        samples = int(count)
        if WAITING.search(stack):
            window.waiting += samples
            continue
        window.samples += samples
        window.by_category[category(stack)] += samples
        if STORE_WRITE.search(stack):
            window.store_writes += samples
    return window


class Sampler:
    """Back-to-back py-spy windows on one process, in a thread, until stopped."""

    def __init__(self, pid: int, out: Path, seconds: float = 10.0, rate: int = 100) -> None:
        spy = shutil.which("py-spy")
        if spy is None:
            raise SystemExit("py-spy is not installed: pip install py-spy")
        self._command = [spy, "record", "-p", str(pid), "-f", "raw", "-r", str(rate)]
        self._out, self._seconds = out, seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.windows: list[tuple[Path, float]] = []

    def start(self) -> None:
        """Start sampling."""
        self._out.mkdir(parents=True, exist_ok=True)
        self._thread.start()

    def _run(self) -> None:
        k = 0
        while not self._stop.is_set():
            raw = self._out / f"window-{k:04d}.txt"
            started = time.monotonic()
            subprocess.run(
                [*self._command, "-o", str(raw), "-d", str(int(self._seconds)), "--nonblocking"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=False,
            )
            self.windows.append((raw, started))
            k += 1

    def stop(self) -> list[Window]:
        """Stop after the current window and return every window read."""
        self._stop.set()
        self._thread.join(self._seconds + 15)
        return [read_window(raw, started, self._seconds) for raw, started in self.windows]


def main() -> None:
    """Print the table of a directory of windows a run left (``-d`` seconds each); times
    are from the first window's start, taken from the files' modification times."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("directory", type=Path)
    parser.add_argument("-d", "--seconds", type=float, default=10.0)
    args = parser.parse_args()
    files = sorted(args.directory.glob("window-*.txt"))
    windows = [read_window(f, f.stat().st_mtime - args.seconds, args.seconds) for f in files]
    for text in table(windows, windows[0].started if windows else 0.0):
        print(text)


def table(windows: list[Window], start: float) -> list[str]:
    """A markdown table: per window, its start (s from ``start``) and shares by category."""
    short = [name.split(",")[0].split(" (")[0] for name in NAMES]
    lines = [
        "| s | busy samples | " + " | ".join(short) + " | of which store writes |",
        "|" + "---|" * (len(NAMES) + 3),
    ]
    for w in windows:
        if not w.samples:
            continue
        shares = [f"{w.by_category[name] / w.samples * 100:.0f} %" for name in NAMES]
        writes = f"{w.store_writes / w.samples * 100:.0f} %"
        lines.append(
            f"| {w.started - start:.0f} | {w.samples} | " + " | ".join(shares) + f" | {writes} |"
        )
    return lines


if __name__ == "__main__":
    main()
