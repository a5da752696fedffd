"""Where a real router process spends its CPU under one kind of NATS load (py-spy).

    pip install py-spy                     # not a project dependency: only this script uses it
    python bench/profile_router.py jetstream heartbeat 30000
    python bench/profile_router.py memory register 20000 --top 40

Starts nats-server and one router on the given store, registers COUNT
instances first if the load is heartbeats, then samples the router with
``py-spy record`` while ``bench/nats_load.py`` sends COUNT requests of the
kind (heartbeats: a second round, the routine one). Prints the load's
figures, then the functions holding the most samples by own time and by
inclusive time (shares of the router's busy samples: idle waits are not
sampled). In-process profiles (``bench/register_inprocess.py --profile``)
miss what only a real process has: nats-py's reader, flusher and socket
writes, the event loop, the JSON logs written to a file.
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

from run import nats_load, router  # noqa: E402

from tests.support.procs import NatsServer  # noqa: E402

# Paths shortened in the listing: site-packages, the checkout, the stdlib.
_PREFIXES = re.compile(
    r"\((?:/[^()]*?site-packages/|/[^()]*?/lib/python3\.\d+/|" + str(BENCH.parent) + "/)"
)


def shares(raw: Path) -> tuple[int, collections.Counter[str], collections.Counter[str]]:
    """Samples in total, and by frame: own (the frame on top) and inclusive (anywhere)."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        samples = int(count)
        total += samples
        frames = [_PREFIXES.sub("(", frame) for frame in stack.split(";")]
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    return total, own, inclusive


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", choices=("memory", "jetstream"))
    parser.add_argument("kind", choices=("register", "heartbeat"))
    parser.add_argument("count", type=int, nargs="?", default=30000)
    parser.add_argument("--top", type=int, default=25, help="rows of each listing")
    args = parser.parse_args()
    spy = shutil.which("py-spy")
    if spy is None:
        sys.exit("py-spy is not installed: pip install py-spy")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        raw = tmp / "samples.txt"
        nats = NatsServer(data_dir=tmp / "nats")
        nats.start()
        try:
            with router(tmp, nats.url, args.store, f"profile_{args.store}") as r:
                assert r.process is not None
                pid = r.process.pid
                if args.kind == "heartbeat":
                    nats_load(nats.url, "register", args.count, 64, "p", pid)
                    # Sampled from the second heartbeat on, as bench/run.py times it.
                    nats_load(nats.url, "heartbeat", args.count, 64, "p", pid)
                command = [spy, "record", "-p", str(pid), "-o", str(raw), "-f", "raw"]
                sampler = subprocess.Popen(
                    [*command, "-r", "500", "--nonblocking"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                time.sleep(1.0)  # py-spy attached before the load starts
                load = nats_load(nats.url, args.kind, args.count, 64, "p", pid)
                sampler.send_signal(2)  # SIGINT: py-spy writes its file and exits
                sampler.wait()
        finally:
            nats.stop()
        total, own, inclusive = shares(raw)
    print(
        f"{args.kind} on the {args.store} store: {load['rps']:,.0f}/s, "
        f"{load['cpu_us']:.0f} us CPU per request; {total} busy samples"
    )
    for title, counter in (("own time", own), ("inclusive", inclusive)):
        print(f"\n-- by {title}")
        for frame, samples in counter.most_common(args.top):
            print(f"{samples / total * 100:5.1f}%  {frame}")


if __name__ == "__main__":
    main()
