"""The replay tooling (DESIGN.md, Read side): the log read back, to show a run at any point
of its history, to fork it there, and to rebuild the read models from the start. One run's
events are read from the log by ``infra.run_log`` (the command API's forks read them there too).

| module | what |
|---|---|
| ``time_travel`` | a run folded to a point by the coordinator's ``evolve`` (``--at``) |
| ``tail`` | the end of the log, and what is appended to it (``aob events tail``) |
| ``rebuild`` | ``aob replay projections``: read models rebuilt from the log, swapped in |
| ``dump`` | a stable dump of a schema's read models (rows by primary key, a digest per table) |
| ``errors`` | the exception tree |
"""
