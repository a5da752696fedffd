"""The docs run as written: every example of every page, against a real router, with its output.

Each page (README.md, CONTRIBUTING.md, every docs/*.md) is replayed on its own,
against its own router, its fenced blocks in order, as a user would: the
router command of the README's first-five-minutes walk-through starts a real
``aegis-router`` (bundled nats-server), every ``python`` block runs as a
complete program, every ``console`` block's ``$`` lines run in bash, and the
``text`` block after a program, or the lines after a ``$`` command, must match
what it printed (``...`` matches anything; whitespace is not compared, so JSON
may be wrapped). A page's first runnable block starts its router (on an empty
registry), so a page with none, pure reference, costs no router. Blocks in
``text``, ``json``, ``mermaid`` or no language are never run; any other block
must run or say why not.

Then all pages once more, in the order the README's Documentation table lists
them, against one router from start to end, as a reader goes through them:
each example must print the same on top of what the ones before left in the
registry, so examples use their own names or show with ``...`` what others
may add. HTML comments steer the replay:

- ``<!-- readme-test: background NAME -->``: run the next program in the background;
- ``<!-- readme-test: start NAME -->`` / ``interrupt NAME``: start it again / Ctrl-C it
  (a page may start a program another page defines: the REST page starts the
  README's ``service.py``);
- ``<!-- readme-test: fresh-router -->``: stop the background programs and restart the
  router on an empty registry (against one router: only stop the programs);
- ``<!-- readme-test: skip (why) -->``: the next block is not run (say why).

Addresses in the pages are the defaults (4222, 8000); the test's own free
ports replace them in code and are mapped back in output.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.pages import (
    PAGES,
    README,
    REPO,
    background_programs,
    console_commands,
    directives_of,
    matches,
    reading_order,
    readme_blocks,
)
from tests.support.procs import free_port, stop_process, wait_for_port

pytestmark = pytest.mark.e2e

NEVER_RUN = ("", "text", "json", "mermaid")  # shown, not run


class Replay:
    """A user at the keyboard: the router, background programs, and the ports they use."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.nats_port = free_port()
        self.http_port = free_port()
        self.router: subprocess.Popen[bytes] | None = None
        self.router_log = workdir / "router.log"
        self.programs: dict[str, str] = {}
        self.first_words: dict[str, str] = {}  # what each program prints when it is up
        self.background: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
        self.registries = 0

    def local(self, text: str) -> str:
        """The pages' addresses to the test's ports."""
        text = text.replace("127.0.0.1:4222", f"127.0.0.1:{self.nats_port}")
        return text.replace("127.0.0.1:8000", f"127.0.0.1:{self.http_port}")

    def as_shown(self, text: str) -> str:
        """The test's ports back to the pages' addresses."""
        text = text.replace(f"127.0.0.1:{self.nats_port}", "127.0.0.1:4222")
        return text.replace(f"127.0.0.1:{self.http_port}", "127.0.0.1:8000")

    def start_router(self) -> str:
        """Start ``aegis-router`` on an empty registry; returns what it printed until ready."""
        self.registries += 1
        env = {
            **os.environ,
            "AEGIS_EMBEDDED_NATS_PORT": str(self.nats_port),
            "AEGIS_HTTP_PORT": str(self.http_port),
            "AEGIS_DATA_DIR": str(self.workdir / f"data-{self.registries}"),
            "AEGIS_LOG_FORMAT": "console",
            # The micro services example waits for the router's next poll: 1 s, not 5.
            "AEGIS_MICRO_POLL": "1",
        }
        env.pop("AEGIS_NATS_URL", None)
        self.router_log.write_bytes(b"")
        with self.router_log.open("ab") as log:
            self.router = subprocess.Popen(
                [Path(sys.executable).parent / "aegis-router"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while "router_ready" not in (printed := self.router_log.read_text(errors="replace")):
            assert self.router.poll() is None, f"aegis-router exited:\n{printed}"
            assert time.monotonic() < deadline, f"aegis-router not ready:\n{printed}"
            time.sleep(0.05)
        wait_for_port(self.http_port)
        return self.as_shown(printed)

    def stop_router(self) -> None:
        """Ctrl-C, as in terminal 1; it must stop cleanly."""
        if self.router is not None:
            code = stop_process(self.router, signal.SIGINT)
            self.router = None
            assert code == 0, self.router_log.read_text(errors="replace")

    def run_program(self, code: str) -> str:
        """Run a complete Python program to its end; returns its standard output."""
        result = subprocess.run(
            [sys.executable, "-c", self.local(code)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=self.workdir,
        )
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr, result.stderr
        return self.as_shown(result.stdout)

    def start_program(self, name: str) -> None:
        """Start a stored program in the background, as in terminal 2."""
        out = self.workdir / f"{name}.out"
        with out.open("wb") as sink:
            process = subprocess.Popen(
                [sys.executable, "-u", "-c", self.local(self.programs[name])],
                stdout=sink,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
            )
        self.background[name] = (process, out)

    def wait_for_output(self, name: str, expected: str) -> None:
        """Until the background program has printed ``expected``."""
        process, out = self.background[name]
        deadline = time.monotonic() + 30
        while not matches(expected, printed := self.as_shown(out.read_text(errors="replace"))):
            assert process.poll() is None, f"{name} exited {process.returncode}:\n{printed}"
            assert time.monotonic() < deadline, f"{name} printed:\n{printed}\nnot:\n{expected}"
            time.sleep(0.05)

    def interrupt(self, name: str) -> None:
        """Ctrl-C a background program: it must leave cleanly, saying nothing more."""
        process, out = self.background.pop(name)
        code = stop_process(process, signal.SIGINT)
        printed = out.read_text(errors="replace")
        assert code == 0, printed
        assert "Traceback" not in printed, printed

    def shell(self, command: str) -> str:
        """Run one ``$`` line in bash; returns its standard output."""
        result = subprocess.run(
            ["bash", "-c", self.local(command)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return self.as_shown(result.stdout)

    def close(self) -> None:
        for name in list(self.background):
            self.interrupt(name)
        self.stop_router()


def test_readme_install_commands_are_the_ones_ci_runs() -> None:
    shell_blocks = [b for b in readme_blocks(README.read_text()) if b.lang == "sh"]
    first, second = shell_blocks[:2]
    ci = (REPO / ".ci" / "run").read_text()

    assert first.code.strip() == "pip install '.[all]' && aegis-router"
    test_command = second.code.strip()
    assert test_command.startswith("pip install -e '.[test]' && ")
    # .ci/run calls pip through the virtual environment's python: the same command.
    assert test_command.replace("pip install", "python -m pip install", 1) in ci


def test_the_pages_hold_examples_that_run() -> None:
    runnable = {
        page.name: sum(
            len(console_commands(b.code)) if b.lang == "console" else 1
            for b in readme_blocks(page.read_text())
            if b.lang in ("python", "console") and "skip" not in directives_of(b)
        )
        for page in PAGES
    }
    assert runnable["README.md"] >= 5, runnable
    assert sum(runnable.values()) >= 20, runnable  # the parser did find the examples


def replay_page(page: Path, replay: Replay, *, one_router: bool = False) -> None:
    """Run a page's blocks in order and compare what they print with what it shows.

    ``one_router``: the router keeps running from page to page, as a reader's
    does; ``fresh-router`` then only stops the programs still running in the
    background (a reader stops one example before starting the next).
    """
    blocks = readme_blocks(page.read_text())
    expect_output_of: str | None = None  # what the next text block describes
    printed = router_output = ""
    for index, block in enumerate(blocks):
        where = f"{page.relative_to(REPO)} line {block.line}"
        directives = directives_of(block)
        if "fresh-router" in directives:
            for name in list(replay.background):
                replay.interrupt(name)
            if not one_router:
                replay.stop_router()
                replay.start_router()
        if "start" in directives:
            name = directives["start"]
            if replay.router is None:
                replay.start_router()
            replay.start_program(name)
            replay.wait_for_output(name, replay.first_words[name])
        if "interrupt" in directives:
            replay.interrupt(directives["interrupt"])
        if "skip" in directives:
            assert directives["skip"], f"{where}: say why the block is skipped"
            continue
        if block.lang == "sh" and block.code.strip().endswith("&& aegis-router"):
            if replay.router is None:
                expect_output_of = "router"
                router_output = replay.start_router()
            continue
        if page == README and block.lang == "sh" and index < 2:
            continue  # the install commands, checked against .ci/run above
        if block.lang == "text" and expect_output_of is not None:
            if expect_output_of == "router":
                assert matches(block.code, router_output), f"{where}:\n{router_output}"
            elif expect_output_of in replay.background:
                replay.wait_for_output(expect_output_of, block.code)
            else:
                assert matches(block.code, printed), f"{where}: printed\n{printed}"
            expect_output_of = None
            continue
        expect_output_of = None
        if block.lang in ("python", "console") and replay.router is None:
            replay.start_router()  # this page's own router, on an empty registry
        if block.lang == "python":
            if "background" in directives:
                name = directives["background"]
                replay.start_program(name)
                expect_output_of = name
            else:
                printed = replay.run_program(block.code)
                expect_output_of = "program"
        elif block.lang == "console":
            for command, shown in console_commands(block.code):
                output = replay.shell(command)
                assert matches(shown, output), f"{where}: {command}\n{output}"
        else:
            assert block.lang in NEVER_RUN, f"{where}: a {block.lang} block that never runs"


def replay_pages(pages: list[Path], tmp_path: Path, *, one_router: bool = False) -> None:
    replay = Replay(tmp_path)
    replay.programs, replay.first_words = background_programs()
    try:
        for page in pages:
            replay_page(page, replay, one_router=one_router)
        replay.close()
    except BaseException:
        with contextlib.suppress(AssertionError):
            replay.close()
        raise


@pytest.mark.one_python
@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(REPO)) for p in PAGES])
def test_every_example_runs_and_prints_what_it_shows(page: Path, tmp_path: Path) -> None:
    replay_pages([page], tmp_path)


@pytest.mark.one_python
def test_the_pages_read_in_order_against_one_router_print_what_they_show(tmp_path: Path) -> None:
    """As a reader does it: one router from the README's first command to the last page,
    every example on top of what the ones before it left behind."""
    replay_pages(reading_order(), tmp_path, one_router=True)
