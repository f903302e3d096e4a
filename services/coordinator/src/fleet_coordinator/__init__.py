"""Fleet Coordinator: a stateless job coordinator with fenced leases over a document store."""

__all__: list[str] = []
