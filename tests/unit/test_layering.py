"""Who may import whom: the wire contract and NATS access are shared; nothing imports
the SDK's client but services; the contract needs no framework."""

from __future__ import annotations

import ast
import json
import subprocess
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


# The SDK ships alone to services: importing it may load only nats-py, msgpack and pydantic.
SDK_NEVER_LOADS = {
    "structlog",
    "sanic",
    "sanic_ext",
    "textual",
    "httpx",
    "orjson",
    "prometheus_client",
}


def test_importing_the_sdk_pulls_in_nothing_else() -> None:
    code = (
        "import sys, json, aegis.sdk, aegis.sdk.client, aegis.sdk.transport, "
        "aegis.sdk.heartbeats, aegis.sdk.watch;"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} "
        "| {m for m in sys.modules if m.startswith('aegis.')})))"
    )
    loaded = set(json.loads(subprocess.check_output([sys.executable, "-c", code], text=True)))

    assert not loaded & SDK_NEVER_LOADS
    assert not {m for m in loaded if m.startswith(("aegis.router", "aegis.console"))}
    assert {"nats", "msgpack", "pydantic"} <= loaded


# -- inside the router: packages by concern, each importing only what lies below it ----

ROUTER = REPO / "router/aegis/router"
# The floor of each package or top-level module; a module imports only from lower
# floors or its own package. REST sits beside the NATS door, never on it.
FLOORS = {
    "domain": 0,
    "metrics": 0,
    "tasks": 0,
    "logging_setup": 0,
    "heap": 1,
    "loop_lag": 1,
    "request_tally": 1,
    "store": 2,
    "leases": 3,
    "registry": 4,
    "settings": 4,
    "bus": 5,
    "rest": 5,
    "micro": 6,
    "runtime": 7,
    "bootstrap": 8,
    "settings_doc": 8,
    "cli": 9,
    "launch": 10,
    "__main__": 11,
    "__init__": 0,
}


def router_imports() -> dict[str, set[str]]:
    """Each router module (dotted, under ``aegis.router``) and the router modules it imports."""
    graph: dict[str, set[str]] = {}
    for path in sorted(ROUTER.rglob("*.py")):
        module = ".".join(path.relative_to(ROUTER).with_suffix("").parts)
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module.startswith("aegis.router."):
                    names.add(node.module.removeprefix("aegis.router."))
            elif isinstance(node, ast.ImportFrom) and node.level:
                raise AssertionError(f"{module}: relative import; the router imports by name")
        graph[module] = names
    return graph


def unit_of(module: str) -> str:
    """The package (or top-level module) a module belongs to."""
    return module.split(".")[0]


def layering_violations(graph: dict[str, set[str]]) -> list[str]:
    """Imports that run sideways or back up the floors."""
    found = []
    for module, names in graph.items():
        for name in names:
            here, there = unit_of(module), unit_of(name)
            if here != there and FLOORS[there] >= FLOORS[here]:
                found.append(f"{module} imports {name} ({there} is not below {here})")
    return sorted(found)


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle of module imports found by a depth-first walk (one per back edge)."""
    circles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the walk's path, 2: done
    path: list[str] = []

    def walk(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                circles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                walk(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            walk(node)
    return circles


def test_every_router_module_has_a_floor() -> None:
    assert {unit_of(m) for m in router_imports()} <= set(FLOORS)


def test_router_packages_import_only_what_lies_below_them() -> None:
    assert layering_violations(router_imports()) == []


def test_the_router_has_no_import_circle() -> None:
    assert import_circles(router_imports()) == []


def test_rest_never_reaches_the_nats_side() -> None:
    rest = {m: names for m, names in router_imports().items() if unit_of(m) == "rest"}
    reached = {
        n for names in rest.values() for n in names if unit_of(n) in {"bus", "micro", "runtime"}
    }
    assert reached == set()


def test_the_rules_catch_a_forbidden_import_and_a_circle() -> None:
    graph = {
        "store.port": {"registry.operations"},  # a floor below reaching up
        "rest.routes": {"bus.endpoints"},  # REST reaching the NATS door, beside it
        "registry.operations": {"registry.engine"},
        "registry.engine": {"registry.operations"},
    }
    assert layering_violations(graph) == [
        "rest.routes imports bus.endpoints (bus is not below rest)",
        "store.port imports registry.operations (registry is not below store)",
    ]
    assert import_circles(graph) == [["registry.engine", "registry.operations", "registry.engine"]]
