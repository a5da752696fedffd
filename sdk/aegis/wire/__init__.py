"""AegisIPC wire contract v1: what the router, the SDK and the console agree on.

Free of any framework but pydantic and msgpack, so every part (and the bare
SDK install) can import it.
"""
