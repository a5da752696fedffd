"""A synchronous provider and consumer in one script: no asyncio in sight.

The provider is a WSGI app (the standard library's ``wsgiref`` here; a Flask
or Django app registers the same way) that registers itself with the address
it serves on. The consumer finds it with a resolver and calls it over HTTP.
Leaving the ``with`` block deregisters the provider and ends the client's
background thread. With a router running (``aegis-router``)::

    python examples/sync_service.py [nats://127.0.0.1:4222]
"""

from __future__ import annotations

import sys
import threading
import urllib.request
from collections.abc import Iterable
from wsgiref.simple_server import WSGIRequestHandler, make_server
from wsgiref.types import StartResponse, WSGIEnvironment

from aegis.sdk.sync import ServiceClient


def hello(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """The provider's one endpoint."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


class QuietHandler(WSGIRequestHandler):
    """Serves requests without logging each one, so the script prints only its story."""

    def log_message(self, format: str, *args: object) -> None:
        pass


def main(nats_url: str) -> None:
    """Serve, register, find and call the provider, then leave cleanly."""
    server = make_server("127.0.0.1", 0, hello, handler_class=QuietHandler)
    serving = threading.Thread(target=server.serve_forever)
    serving.start()
    try:
        with ServiceClient(nats_url) as client:
            # Provider: register this process with the address it serves on.
            address = {"host": "127.0.0.1", "port": server.server_port}
            client.register("greeter", "greeter-1", address)
            print("registered greeter-1")

            # Consumer: a view of the service kept current in the background;
            # pick() reads it from memory, with no round trip to the router.
            greeters = client.resolver("greeter")
            target = greeters.pick()
            url = f"http://{target.metadata['host']}:{target.metadata['port']}/"
            with urllib.request.urlopen(url, timeout=5) as response:
                print(f"{target.instance_id} says {response.read().decode()}")
            print("discovered", [i.instance_id for i in client.discover("greeter")])
        print("deregistered greeter-1")
    finally:
        server.shutdown()
        serving.join()
        server.server_close()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "nats://127.0.0.1:4222")
