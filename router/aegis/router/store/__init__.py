"""The registry's storage port and its adapters (memory, JetStream KV)."""
