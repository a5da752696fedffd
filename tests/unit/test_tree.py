"""The unit tests mirror the source tree (CONTRIBUTING.md, "Tests mirror the code").

The tests of ``<package>/<module>.py`` are ``test_<module>.py`` in the same
folder under ``tests/unit/``, or, when they are many, ``test_<module>_<aspect>.py``
files there. Checks of a whole tree (its imports) sit at the top of ``tests/unit/``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "tests/unit"
# Each folder of unit tests and the source folder it mirrors.
MIRRORS = {
    "router": REPO / "router/aegis/router",
    "sdk": REPO / "sdk/aegis/sdk",
    "wire": REPO / "sdk/aegis/wire",
    "connect": REPO / "sdk/aegis/connect",
}


def unmirrored(tests: Path, source: Path) -> list[str]:
    """Test files under ``tests`` (relative to it) that name no module of the matching
    folder of ``source``."""
    found = []
    for test in sorted(tests.rglob("test_*.py")):
        folder = source / test.parent.relative_to(tests)
        modules = {p.stem for p in folder.glob("*.py")} - {"__init__"}
        name = test.stem.removeprefix("test_")
        if not any(name == m or name.startswith(m + "_") for m in modules):
            found.append(str(test.relative_to(tests)))
    return found


@pytest.mark.parametrize("folder", sorted(MIRRORS))
def test_every_unit_test_file_is_named_for_a_module_beside_it(folder: str) -> None:
    assert unmirrored(UNIT / folder, MIRRORS[folder]) == []


def test_a_test_named_for_no_module_is_caught(tmp_path: Path) -> None:
    source, tests = tmp_path / "src", tmp_path / "tests"
    (source / "pkg").mkdir(parents=True)
    (source / "pkg/engine.py").touch()
    (tests / "pkg").mkdir(parents=True)
    for name in ("test_engine.py", "test_engine_races.py", "test_everything.py"):
        (tests / "pkg" / name).touch()
    (tests / "test_pkg.py").touch()
    assert unmirrored(tests, source) == ["pkg/test_everything.py", "test_pkg.py"]
