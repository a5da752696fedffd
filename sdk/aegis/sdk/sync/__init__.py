"""The SDK for synchronous code (Flask, Django, scripts): no event loop needed.

>>> with ServiceClient("nats://127.0.0.1:4222") as client:
...     instance = client.register("billing", "billing-1", {"version": "1.4"})

It wraps ``aegis.sdk.ServiceClient``: same arguments, same errors (from
``aegis.sdk``), heartbeats in one background thread that ``close()`` ends.
"""

from .client import ServiceClient
from .loop import ClientClosedError

__all__ = ["ClientClosedError", "ServiceClient"]
