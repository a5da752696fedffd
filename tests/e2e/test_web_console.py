"""``aegis-console --web`` in a real headless Chromium, against a real router.

The browser side is ``web_console.cjs`` (puppeteer-core and @sparticuz/chromium,
locked in npm/package-lock.json); it reads the page's terminal buffer. This test
starts the router, the services and two web consoles, runs the script and
answers its ``wait`` lines by changing the registry.

The screenshot in the docs comes from here (docs/web-console.md says how):
``AEGIS_WEB_CONSOLE_SCREENSHOT=docs/images/web-console.png pytest -n 0 \
tests/e2e/test_web_console.py``
"""

from __future__ import annotations

import asyncio
import os
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from aegis.router.rest.tokens import Role, new_entry
from aegis.sdk import ServiceClient

from tests.support.procs import NatsServer, router_process, web_console_process

pytestmark = [pytest.mark.e2e, pytest.mark.one_python]

ADMIN_TOKEN = "web-console-test-admin-token"
LOGIN_SECRET = "web-console-test-login-secret"
SCREENSHOT_VARIABLE = "AEGIS_WEB_CONSOLE_SCREENSHOT"
CHECKS = [
    "ok login asked",
    "ok services and statuses",
    "ok ONLINE in green",
    "ok filter",
    "ok detail panel",
    "ok a new instance counted",
    "ok the new instance shown",
    "ok maintenance in the events pane",
    "ok maintenance shown",
    "ok the whole registry again",
    "ok the instances table focused",
    "ok screenshot",
    "ok refusal shown",
    "ok read role shown",
    "ok action refused to a read token",
]
READER, READ_ENTRY = new_entry("web-reader", Role.READ)


async def _maintenance_reason(api_url: str) -> object:
    async with httpx.AsyncClient(
        base_url=api_url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=5
    ) as http:
        body = (await http.get("/api/v1/admin/services/payments/instances")).json()
    marks = {i["instance_id"]: i.get("maintenance") for i in body["instances"]}
    mark = marks.get("payments-9")
    return mark and mark["reason"]


async def test_the_console_in_a_headless_browser(
    browser_folder: Path, nats_server: NatsServer, tmp_path: Path
) -> None:
    screenshot = _screenshot_path(tmp_path)
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{READ_ENTRY.line()}\n")
    router = router_process(
        tmp_path,
        nats_url=nats_server.url,
        AEGIS_ADMIN_TOKEN=ADMIN_TOKEN,
        AEGIS_TOKENS_FILE=str(tokens),
    )
    said: list[str] = []  # the script's lines
    transcript: list[str] = []  # the same with the time since it started, and the test's notes
    async with router, ServiceClient(nats_server.url) as services:
        await services.register("checkout", "checkout-1", {"version": "3.1.0"})
        await services.register("checkout", "checkout-2", {"version": "3.1.0"})
        await services.register("payments", "payments-1", {"version": "2.4.0"})
        with ExitStack() as consoles:
            operator_url, _ = consoles.enter_context(
                web_console_process(
                    tmp_path / "operator.log",
                    router.http_url,
                    token=ADMIN_TOKEN,
                    secret=LOGIN_SECRET,
                    interval=0.5,
                )
            )
            refused_url, _ = consoles.enter_context(
                web_console_process(
                    tmp_path / "refused.log", router.http_url, token="not-the-token", interval=0.5
                )
            )
            reader_url, _ = consoles.enter_context(
                web_console_process(
                    tmp_path / "reader.log", router.http_url, token=READER, interval=0.5
                )
            )
            node = await asyncio.create_subprocess_exec(
                "node",
                "web_console.cjs",
                cwd=browser_folder,
                env={
                    **os.environ,
                    "OPERATOR_URL": operator_url,
                    "OPERATOR_SECRET": LOGIN_SECRET,
                    "REFUSED_URL": refused_url,
                    "READER_URL": reader_url,
                    "SCREENSHOT": str(screenshot),
                },
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            assert node.stdin is not None
            assert node.stdout is not None
            started = time.monotonic()
            try:
                async with asyncio.timeout(240):
                    async for raw in node.stdout:
                        line = raw.decode(errors="replace").rstrip()
                        said.append(line)
                        transcript.append(f"{time.monotonic() - started:5.1f}s {line}")
                        if line == "wait change":
                            await services.register("payments", "payments-9", {"version": "2.5"})
                        elif line == "wait maintenance":
                            reason = await _maintenance_reason(router.http_url)
                            transcript.append(f"router: maintenance reason {reason!r}")
                            assert reason == "web drill", "\n".join(transcript)
                        if line.startswith("wait "):
                            node.stdin.write(b"go\n")
                            await node.stdin.drain()
                    code = await node.wait()
            finally:
                if node.returncode is None:
                    node.kill()
                    await node.wait()
    print("\n".join(transcript))  # shown with -s or on failure: where the time goes
    assert code == 0, "\n".join(transcript) + "\n--- logs\n" + _logs(tmp_path)[-4000:]
    assert [line for line in said if line in CHECKS] == CHECKS, "\n".join(transcript)
    assert _size(screenshot) > 10_000
    assert READER not in _logs(tmp_path), "the read token's secret is in no log"


def _screenshot_path(tmp_path: Path) -> Path:
    return Path(os.environ.get(SCREENSHOT_VARIABLE) or tmp_path / "web-console.png").resolve()


def _logs(folder: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted(folder.glob("*.log")))


def _size(path: Path) -> int:
    return path.stat().st_size
