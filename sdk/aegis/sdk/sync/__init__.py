"""The SDK for synchronous code (Flask, Django, scripts): no event loop needed.

>>> with ServiceClient("nats://127.0.0.1:4222") as client:
...     instance = client.register("billing", "billing-1", {"version": "1.4"})
...     payments = client.resolver("payments", where={"zone": "eu-1"})
...     target = payments.pick()  # from memory, no round trip

It wraps ``aegis.sdk.ServiceClient``: same arguments, same errors (from
``aegis.sdk``), heartbeats and resolvers kept current in one background thread that
``close()`` ends.
"""

from .client import ServiceClient
from .loop import ClientClosedError
from .resolver import Resolver

__all__ = ["ClientClosedError", "Resolver", "ServiceClient"]
