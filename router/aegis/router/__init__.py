"""AegisIPC router: the service registry behind ``ipc.service.*`` and the admin REST API."""
