"""The lease model: membership of routers, partitions, contacts held in memory, forwarding."""
