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
    assert (error.status_code, error.code, str(error)) == (status, "THE_CODE", "THE_CODE happened")


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
