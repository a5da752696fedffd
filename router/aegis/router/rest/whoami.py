"""``GET /api/v1/admin/whoami``: which token a caller holds and what it may do.

The console asks once, to show its role and leave out the actions it may not take.
"""

from __future__ import annotations

from aegis.router.rest.auth import principal
from aegis.router.rest.contract import ADMIN_PREFIX, ref
from aegis.router.rest.errors import INTERNAL, UNAUTHORIZED
from aegis.wire.rest import ErrorResponse, WhoAmI
from sanic import Blueprint, HTTPResponse, Request, json
from sanic_ext import openapi

# Shared by every app (tests build many).
bp = Blueprint("whoami", url_prefix=ADMIN_PREFIX)


@bp.get("/whoami")
@openapi.summary("The caller's token and role")
@openapi.description(
    "The name and role of the bearer token sent (`read`: listings, detail, events; "
    "`operator`: also deregister and maintenance). A router configured with no token "
    "answers `anonymous`, `operator`."
)
@openapi.response(200, ref(WhoAmI), "The token's name and role.")
@openapi.response(401, ref(ErrorResponse), UNAUTHORIZED)
@openapi.response(500, ref(ErrorResponse), INTERNAL)
async def whoami(request: Request) -> HTTPResponse:
    """The principal the guard found for this request."""
    who = principal(request)
    assert who is not None  # the guard sets it on every admin request it lets through
    return json(WhoAmI(name=who.name, role=who.role.value).model_dump(mode="json"))
