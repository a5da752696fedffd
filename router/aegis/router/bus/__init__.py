"""The NATS door: connection, bundled server, responder, endpoints and admission."""
