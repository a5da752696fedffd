"""What one open page of ``aegis-console --web`` costs: CPU of the router, of the web
server and of the page's console process, with the page open and without.

Starts nats-server, an aegis-router with ``--instances`` instances heartbeating
(from this process), and ``aegis-console --web`` (poll every 2 s, the default).
Measures each process's CPU (utime + stime from /proc, in % of one core) for
``--seconds`` with no page open, then again with one page open in headless
Chromium (tests/e2e/web_console.cjs, npm packages of tests/e2e/npm; needs node
and npm). Chromium's own CPU is the browser's, shown for scale.

    python bench/web_console.py               # 50 instances, 20 s per window
    python bench/web_console.py --quick       # tiny sizes: checks it still runs

A benchmark, not a test: it reports numbers and never fails on them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aegis.sdk import ServiceClient  # noqa: E402

from tests.support.npm import npm_ci  # noqa: E402
from tests.support.procs import NatsServer, router_process, web_console_process  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
SCRIPT = ROOT / "tests/e2e/web_console.cjs"
MANIFEST = ROOT / "tests/e2e/npm"


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` so far, in seconds (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def descendants(pid: int) -> list[int]:
    """Every process under ``pid``, children first."""
    found: list[int] = []
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return found
    for child in map(int, children):
        found += [child, *descendants(child)]
    return found


def command_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


async def measure(groups: dict[str, list[int]], seconds: float) -> dict[str, float]:
    """CPU % of one core of each group of processes over ``seconds``."""
    before = {name: sum(map(cpu_seconds, pids)) for name, pids in groups.items()}
    started = time.monotonic()
    await asyncio.sleep(seconds)
    wall = time.monotonic() - started
    return {
        name: 100 * (sum(map(cpu_seconds, pids)) - before[name]) / wall
        for name, pids in groups.items()
    }


async def run(instances: int, seconds: float) -> None:
    work = Path(tempfile.mkdtemp(prefix="aegis-web-bench-"))
    node_folder = work / "node"
    npm_ci(node_folder, MANIFEST)
    shutil.copy(SCRIPT, node_folder / SCRIPT.name)
    nats_server = NatsServer(data_dir=work / "nats")
    nats_server.start()
    router = router_process(work, nats_url=nats_server.url)
    try:
        async with router, ServiceClient(nats_server.url) as services:
            for n in range(instances):
                await services.register(f"svc-{n % 10}", f"instance-{n}", {"n": n})
            with web_console_process(work / "web.log", router.http_url) as (url, web):
                assert router.process is not None
                idle = await measure({"router": [router.process.pid], "web": [web.pid]}, seconds)
                node = await asyncio.create_subprocess_exec(
                    "node",
                    SCRIPT.name,
                    cwd=node_folder,
                    env={**os.environ, "HOLD": "1", "OPERATOR_URL": url},
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                )
                assert node.stdout is not None
                assert node.stdin is not None
                async for line in node.stdout:
                    if line.startswith(b"wait close"):
                        break
                    if line.startswith(b"FAILED"):
                        raise RuntimeError(line.decode())
                python = sys.executable
                consoles = [p for p in descendants(web.pid) if command_of(p).startswith(python)]
                browser = descendants(node.pid)
                groups = {
                    "router": [router.process.pid],
                    "web": [web.pid],
                    "console": consoles,
                    "browser": [node.pid, *browser],
                }
                open_ = await measure(groups, seconds)
                node.stdin.write(b"go\n")
                await node.stdin.drain()
                await node.wait()
    finally:
        nats_server.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"# aegis-console --web, {instances} instances, poll 2 s, {seconds:g} s per window")
    print(f"# {len(consoles)} console process for the page; CPU in % of one core")
    print(f"{'process':<28} {'no page':>8} {'one page':>9}")
    rows = [
        ("router", "router"),
        ("web server (aiohttp)", "web"),
        ("the page's console", "console"),
        ("headless Chromium", "browser"),
    ]
    for label, key in rows:
        print(f"{label:<28} {idle.get(key, 0.0):>7.1f}% {open_[key]:>8.1f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--instances", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--quick", action="store_true", help="5 instances, 2 s windows")
    args = parser.parse_args()
    if args.quick:
        args.instances, args.seconds = 5, 2.0
    asyncio.run(run(args.instances, args.seconds))


if __name__ == "__main__":
    main()
