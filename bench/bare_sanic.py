"""Baseline: a bare Sanic route returning fixed JSON bytes.

Usage: python bench/bare_sanic.py PORT BODY_FILE
"""

from __future__ import annotations

import sys

from sanic import Request, Sanic
from sanic.response import HTTPResponse, raw

app = Sanic("bare")
BODY = open(sys.argv[2], "rb").read() if len(sys.argv) > 2 else b"{}"  # noqa: SIM115


@app.get("/<path:path>")
async def fixed(request: Request, path: str) -> HTTPResponse:
    """The same bytes for every path."""
    return raw(BODY, content_type="application/json")


if __name__ == "__main__":
    app.run(port=int(sys.argv[1]), single_process=True, access_log=False, motd=False)
