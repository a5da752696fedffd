"""The documentation pages as the README test reads them: fenced blocks, the hidden
``readme-test`` directives before them, expected output with ``...`` wildcards, the
programs the pages run in the background, and the order a reader reads the pages in.

``tests/e2e/test_readme.py`` replays the pages; other end-to-end tests run a page's
program as written (the README's first service, in ``test_first_service.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
PAGES = [README, REPO / "CONTRIBUTING.md", *sorted((REPO / "docs").glob("*.md"))]
ANSI = re.compile(r"\x1b\[[0-9;]*m")
DIRECTIVE = re.compile(r"<!--\s*readme-test:\s*(.+?)\s*-->")


@dataclass
class Block:
    """One fenced block of a page and the directives written just before it."""

    lang: str
    code: str
    line: int
    directives: list[str] = field(default_factory=list)


def readme_blocks(text: str) -> list[Block]:
    """Every fenced block in order; a directive with no block after it is its own block."""
    blocks: list[Block] = []
    pending: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if found := DIRECTIVE.fullmatch(lines[i].strip()):
            pending.append(found.group(1))
        elif lines[i].startswith("```"):
            start = i
            lang = lines[i][3:].strip()
            i += 1
            body: list[str] = []
            while not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            blocks.append(Block(lang, "\n".join(body) + "\n", start + 1, pending))
            pending = []
        i += 1
    assert not pending, f"directives {pending} stand before no block"
    return blocks


def matches(expected: str, actual: str) -> bool:
    """``actual`` is ``expected`` but for ``...`` wildcards and white space."""
    want = re.sub(r"\s+", "", expected)
    got = re.sub(r"\s+", "", ANSI.sub("", actual))
    pattern = ".*?".join(re.escape(part) for part in want.split("..."))
    return re.fullmatch(pattern, got, re.DOTALL) is not None


def console_commands(code: str) -> list[tuple[str, str]]:
    """``(command, expected output)`` pairs of a ``console`` block."""
    pairs: list[tuple[str, str]] = []
    for line in code.splitlines():
        if line.startswith("$ "):
            pairs.append((line[2:], ""))
        else:
            assert pairs, f"console output before any command: {line!r}"
            command, shown = pairs[-1]
            pairs[-1] = (command, shown + line + "\n")
    return pairs


def directives_of(block: Block) -> dict[str, str]:
    return dict(d.split(" ", 1) if " " in d else (d, "") for d in block.directives)


def background_programs() -> tuple[dict[str, str], dict[str, str]]:
    """Every page's background programs by name, and what each prints once it is up."""
    programs: dict[str, str] = {}
    first_words: dict[str, str] = {}
    for page in PAGES:
        blocks = readme_blocks(page.read_text())
        for index, block in enumerate(blocks):
            if name := directives_of(block).get("background"):
                assert name not in programs, f"{page.name}: a second program named {name}"
                programs[name] = block.code
                after = blocks[index + 1] if index + 1 < len(blocks) else None
                if after is not None and after.lang == "text":
                    first_words[name] = after.code
    return programs, first_words


def reading_order() -> list[Path]:
    """The README, then the pages in the order its Documentation table lists them."""
    table = README.read_text().split("\n## Documentation\n", 1)[1]
    linked = [REPO / name for name in re.findall(r"\]\(((?:docs/)?[\w-]+\.md)\)", table)]
    order = [README, *dict.fromkeys(linked)]
    assert sorted(order) == sorted(PAGES), "the Documentation table lists every page once"
    return order
