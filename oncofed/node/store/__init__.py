"""The centre's SQLite store: schema, migrations and ingest. SQL lives only in this package."""
