"""Who may import whom: the wire contract and NATS access are shared; nothing imports
the SDK's client but services; the contract needs no framework."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = {
    "aegis.wire": REPO / "sdk/aegis/wire",
    "aegis.connect": REPO / "sdk/aegis/connect",
    "aegis.sdk": REPO / "sdk/aegis/sdk",
    "aegis.router": REPO / "router/aegis/router",
    "aegis.console": REPO / "console/aegis/console",
}
# What each part may import beyond the standard library and its own modules.
ALLOWED = {
    "aegis.wire": {"pydantic", "pydantic_core", "msgpack"},
    "aegis.connect": {"pydantic", "nats", "aegis.connect"},
    "aegis.sdk": {"pydantic", "nats", "aegis.wire", "aegis.connect"},
}
FORBIDDEN = {
    "aegis.router": {"aegis.sdk", "aegis.console"},
    "aegis.console": {"aegis.sdk", "aegis.router", "aegis.connect", "nats"},
}


def imported(package: str) -> dict[str, set[str]]:
    """Absolute modules imported by each file of ``package``."""
    found: dict[str, set[str]] = {}
    for path in sorted(PACKAGES[package].rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)
        found[str(path.relative_to(REPO))] = names
    return found


def within(name: str, prefixes: set[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_router_and_console_never_import_the_sdk_client(package: str) -> None:
    offenders = {
        path: sorted(n for n in names if within(n, FORBIDDEN[package]))
        for path, names in imported(package).items()
    }
    assert {path: names for path, names in offenders.items() if names} == {}


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_shared_parts_need_nothing_but_their_libraries(package: str) -> None:
    stdlib = sys.stdlib_module_names | {"__future__"}
    offenders = {
        path: sorted(
            n for n in names if n.split(".")[0] not in stdlib and not within(n, ALLOWED[package])
        )
        for path, names in imported(package).items()
    }
    assert {path: names for path, names in offenders.items() if names} == {}
