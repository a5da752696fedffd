"""Conditional GETs of the listings: an ``ETag`` on each, 304 to a matching ``If-None-Match``.

A listing's tag is made from what decides its body: the event stream's
version it reflects, the registry's count of shown changes, and the request
(path and query). It is computed before the body, so an unchanged listing
costs a hash and no rendering. A contact alone (``last_heartbeat_at``) does
not change a tag: a 304 may leave a client with an older contact time, as an
event stream does (contacts are not change events).
"""

from __future__ import annotations

import hashlib

from sanic import HTTPResponse

VERSION_HEADER = "X-Aegis-Version"


def entity_tag(*parts: str | int) -> str:
    """A strong entity tag (quoted) of ``parts``."""
    text = "\x1f".join(map(str, parts)).encode()
    return f'"{hashlib.blake2b(text, digest_size=12).hexdigest()}"'


def matches(if_none_match: str | None, tag: str) -> bool:
    """Whether an ``If-None-Match`` value names ``tag`` (weak comparison, as RFC 9110 says
    for it: ``W/`` ignored), or is ``*``."""
    if not if_none_match:
        return False
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == tag:
            return True
    return False


def listing_headers(tag: str, version: str) -> dict[str, str]:
    """The headers every listing sends: its tag and the version it reflects."""
    return {"ETag": tag, VERSION_HEADER: version}


def not_modified(tag: str, version: str) -> HTTPResponse:
    """304 with no body: the client's copy (``tag``) is current."""
    return HTTPResponse(status=304, headers=listing_headers(tag, version))
