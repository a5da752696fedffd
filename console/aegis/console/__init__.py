"""AegisIPC console: a terminal dashboard of the registry."""
