"""Reaching NATS, shared by the router and the SDK: credentials and TLS (``NatsAuth``),
connecting with bounded, backed-off attempts, and key-value log events on the
standard library. Needs only nats-py and pydantic.
"""
