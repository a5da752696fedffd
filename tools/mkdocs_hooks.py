"""MkDocs hooks: the README is the site's front page and CONTRIBUTING.md one of its pages.

Both stay at the top of the repository, where GitHub shows them, outside ``docs/``.
``on_files`` adds them to the site; ``on_page_markdown`` points every link at where
its target lands in the site (``docs/sdk.md`` from the README is ``sdk.md`` there,
``../README.md`` from a page is ``index.md``). A link to any other file outside
``docs/`` is left as it is, so ``mkdocs build --strict`` fails on it.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

REPO = Path(__file__).resolve().parents[1]
# Repository path -> page in the site.
OUTSIDE = {"README.md": "index.md", "CONTRIBUTING.md": "contributing.md"}
LINK = re.compile(r"\]\((?P<target>[^)\s#]*)(?P<anchor>#[^)\s]*)?\)")


def on_files(files: Files, config: MkDocsConfig, **_: Any) -> Files:
    for source, page in OUTSIDE.items():
        files.append(File.generated(config, page, abs_src_path=str(REPO / source)))
    return files


def site_target(target: str, page_dir: str) -> str:
    """``target``, a link written in the repository file at ``page_dir``, as the site needs it."""
    if not target or "://" in target or target.startswith("mailto:"):
        return target
    in_repo = posixpath.normpath(posixpath.join(page_dir, target))
    if in_repo in OUTSIDE:
        return OUTSIDE[in_repo]
    if in_repo.startswith("docs/"):
        return in_repo.removeprefix("docs/")
    return target


def on_page_markdown(markdown: str, page: Page, **_: Any) -> str:
    outside = page.file.src_uri in OUTSIDE.values()
    page_dir = "" if outside else "docs"

    def rewrite(link: re.Match[str]) -> str:
        target = site_target(link["target"], page_dir)
        return f"]({target}{link['anchor'] or ''})"

    return LINK.sub(rewrite, markdown)
