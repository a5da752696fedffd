"""compose.yaml: valid by the Compose Specification, and using only what exists.

No Docker engine runs here, so this is what CI can check: the file against
the Compose Specification's JSON schema (vendored by check-jsonschema, so
nothing is downloaded), every AEGIS_* variable and router flag against the
router's settings, and every nats-server command line against the real
nats-server binary with the permissions file it mounts.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from aegis.router.bus.embedded import find_binary
from aegis.router.settings import build_parser, options

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "compose.yaml"
DOCKERFILE = REPO / "Dockerfile"

CHECK_JSONSCHEMA = [sys.executable, "-m", "check_jsonschema"]


def load_compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())  # resolves <<: merges
    return document


def compose_schema() -> dict[str, Any]:
    vendored = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema: dict[str, Any] = json.loads(vendored.read_text(encoding="utf-8"))
    return schema


def schema_errors(document: object) -> list[str]:
    schema = compose_schema()
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema)
    return sorted(
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(document)
    )


def router_variables() -> set[str]:
    return {option.env for option in options()}


def router_services(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Services built from this repository's Dockerfile (entrypoint: aegis-router)."""
    return {name: service for name, service in document["services"].items() if "build" in service}


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # the KEY=VALUE list form
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): str(v) for k, v in env.items()}


def unknown_router_settings(document: dict[str, Any]) -> list[str]:
    """AEGIS_* variables no router setting reads, and router commands its CLI rejects."""
    known = router_variables()
    problems = [
        f"{name}: {var}"
        for name, service in document["services"].items()
        for var in environment(service)
        if var.startswith("AEGIS_") and var not in known
    ]
    parser = build_parser()
    for name, service in router_services(document).items():
        command = service.get("command")
        if command is None:
            continue
        args = command.split() if isinstance(command, str) else [str(a) for a in command]
        try:
            parser.parse_args(args)
        except SystemExit:
            problems.append(f"{name}: command {args}")
    return problems


# -- the schema ------------------------------------------------------------------------


def test_compose_yaml_matches_the_compose_specification() -> None:
    assert schema_errors(load_compose()) == []


def test_the_schema_check_catches_mistakes() -> None:
    document = load_compose()
    broken = copy.deepcopy(document)
    broken["services"]["nats-1"]["comand"] = broken["services"]["nats-1"].pop("command")
    broken["services"]["router-a"]["ports"] = "8000:8000"
    broken["configs"]["nats-permissions"]["flie"] = "x"

    errors = schema_errors(broken)

    assert any("comand" in e for e in errors), errors
    assert any(e.startswith("services/router-a/ports") for e in errors), errors
    assert any("flie" in e for e in errors), errors


def test_check_jsonschema_cli_validates_compose_offline() -> None:
    result = subprocess.run(
        [*CHECK_JSONSCHEMA, "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok" in result.stdout


# -- what it uses exists ---------------------------------------------------------------


def test_every_aegis_variable_and_router_flag_is_one_the_router_knows() -> None:
    document = load_compose()
    assert router_services(document), "compose.yaml runs no router"
    assert unknown_router_settings(document) == []


def test_the_settings_check_catches_mistakes() -> None:
    document = load_compose()
    document["services"]["router-a"]["environment"] = {
        **environment(document["services"]["router-a"]),
        "AEGIS_NATS_PASWORD": "typo",
    }
    document["services"]["router-b"]["command"] = ["--nats-pasword", "typo"]

    assert unknown_router_settings(document) == [
        "router-a: AEGIS_NATS_PASWORD",
        "router-b: command ['--nats-pasword', 'typo']",
    ]


def test_routers_sign_in_to_nats_as_the_router_user() -> None:
    for name, service in router_services(load_compose()).items():
        env = environment(service)
        assert env.get("AEGIS_NATS_USER") == "router", name
        assert env.get("AEGIS_NATS_PASSWORD") == "${NATS_ROUTER_PASSWORD:?set NATS_ROUTER_PASSWORD}"


def test_dockerfile_runs_the_router_with_known_variables() -> None:
    text = DOCKERFILE.read_text()
    assert 'ENTRYPOINT ["aegis-router"]' in text
    variables = set(re.findall(r"\b(AEGIS_[A-Z_]+)=", text))
    assert variables
    assert variables <= router_variables()


def nats_commands(document: dict[str, Any]) -> dict[str, list[str]]:
    """Each nats service's command, with the mounted permissions file's path made local."""
    configs = {
        entry["target"]: REPO / document["configs"][entry["source"]]["file"]
        for service in document["services"].values()
        for entry in service.get("configs", [])
    }
    return {
        name: [str(configs.get(arg, arg)) for arg in service["command"]]
        for name, service in document["services"].items()
        if str(service.get("image", "")).startswith("nats:")
    }


@pytest.mark.parametrize("name", ["nats-1", "nats-2", "nats-3"])
def test_nats_commands_and_permissions_file_are_accepted_by_nats_server(name: str) -> None:
    document = load_compose()
    command = nats_commands(document)[name]
    assert command[:2] == ["-c", str(REPO / "deploy" / "nats-permissions.conf")]
    # nats-server reads the passwords from its environment, as compose passes them.
    env = {**os.environ, **environment(document["services"][name])}
    env |= {
        name: "pw"
        for name in (
            "NATS_ROUTER_PASSWORD",
            "NATS_PAYMENTS_PASSWORD",
            "NATS_SHOP_PASSWORD",
            "NATS_READER_PASSWORD",
        )
    }
    result = subprocess.run(
        [str(find_binary()), *command, "-t"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "is valid" in output, output
    assert "not defined" not in output, output  # nats-server exits 0 on unknown flags


def test_routers_answer_only_the_per_service_subjects_the_permissions_file_rules() -> None:
    for name, service in router_services(load_compose()).items():
        assert environment(service).get("AEGIS_SHARED_SUBJECTS") == "false", name
    text = (REPO / "deploy" / "nats-permissions.conf").read_text()
    for user in ("router", "payments", "shop", "reader"):
        assert f"user: {user}\n" in text, user
    assert '"ipc.svc.billing.>"' in text
    assert '"ipc.svc.checkout.>"' in text
