"""The read model: the Postgres tables that the projector writes and the query API and the
replay tooling read (DESIGN.md, Read side). Shared here so that no reader imports the writer.

| module | what |
|---|---|
| ``schema.sql`` | the tables, created idempotently at start-up by every process that needs them |
| ``schema`` | the SQL of ``schema.sql``, a schema name's check, creation, the batch lock |
| ``rows`` | one dataclass per run table: its columns |
| ``tables`` | each run table's SQL (select lists, set-based upserts), derived from its row |
| ``offsets`` | ``projection_offsets``: the projection's name, and how far it has read the log |
| ``channels`` | the NOTIFY channels a committed batch signals on |
| ``errors`` | the exception tree |
"""
