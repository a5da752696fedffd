"""``errors.from_reply``: every router reply status becomes the one exception it stands for."""

from __future__ import annotations

from typing import Any

import pytest
from aegis.sdk import (
    AegisError,
    DuplicateInstanceError,
    ErrorDetail,
    Instance,
    InstanceNotFoundError,
    LimitExceededError,
    RegistrationValidationError,
    Reply,
    RouterError,
    ServiceUnavailableError,
    SessionMismatchError,
)
from aegis.sdk.errors import from_reply

from tests.support.wire import instance_body

INSTANCE = instance_body("billing", "b-1")


def failed(status: int, code: str = "SOME_CODE", **members: Any) -> Reply:
    error = {"code": code, "message": f"{code} happened"}
    return Reply.model_validate({"ok": False, "status": status, "error": error, **members})


@pytest.mark.parametrize("status", [200, 201])
def test_a_successful_reply_is_no_error(status: int) -> None:
    assert from_reply(Reply(ok=True, status=status)) is None


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (400, RegistrationValidationError),
        (403, SessionMismatchError),
        (404, InstanceNotFoundError),
        (409, DuplicateInstanceError),
        (429, LimitExceededError),
        (503, ServiceUnavailableError),
        (500, RouterError),
        (413, RouterError),
    ],
)
def test_each_status_has_its_exception(status: int, error_type: type[AegisError]) -> None:
    error = from_reply(failed(status, "THE_CODE"))

    assert type(error) is error_type
    assert (error.status_code, error.code) == (status, "THE_CODE")
    assert str(error).startswith("THE_CODE happened")  # a 409 says what to do after it


def test_409_says_how_to_wait_for_a_previous_run_and_how_long() -> None:
    router_says = "instance 'b-1' of 'billing' is registered by another session"
    body = {"code": "DUPLICATE_INSTANCE", "message": router_says}
    reply = {"ok": False, "status": 409, "error": body, "existing": INSTANCE, "retry_after": 28.3}
    error = from_reply(Reply.model_validate(reply))

    assert str(error) == (
        f"{router_says}. If that owner was a previous run of this service that stopped "
        "without deregistering, its registration expires in 28.3s, and "
        "register(..., wait_if_taken=30) waits for that and takes the instance over; "
        "if a copy is still running, give this one another instance id"
    )


def test_409_without_a_time_still_names_wait_if_taken() -> None:
    error = from_reply(failed(409, "DUPLICATE_INSTANCE", existing=INSTANCE))

    assert "register(..., wait_if_taken=SECONDS) waits for its registration to expire" in str(error)


def test_409_carries_the_holder_and_when_it_can_be_taken() -> None:
    error = from_reply(failed(409, "DUPLICATE_INSTANCE", existing=INSTANCE, retry_after=7.5))

    assert isinstance(error, DuplicateInstanceError)
    assert error.existing == Instance.model_validate(INSTANCE)
    assert error.retry_after == 7.5


def test_400_carries_the_validation_details() -> None:
    details = [{"loc": ["metadata", "k"], "msg": "too big", "type": "value_error"}]
    body = {"code": "VALIDATION_ERROR", "message": "bad", "details": details}
    error = from_reply(Reply.model_validate({"ok": False, "status": 400, "error": body}))

    assert isinstance(error, RegistrationValidationError)
    assert error.details == [ErrorDetail(loc=["metadata", "k"], msg="too big", type="value_error")]


def test_a_failure_without_an_error_body_names_the_status() -> None:
    error = from_reply(Reply(ok=False, status=502))

    assert isinstance(error, RouterError)
    assert (error.status_code, error.code, str(error)) == (502, None, "router answered 502")
