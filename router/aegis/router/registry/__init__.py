"""The registry service: operations and liveness over the store, under the leases."""
