"""The centre's node: its directory, store, ingest and (later) query service."""
