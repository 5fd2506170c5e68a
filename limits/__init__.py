"""Limits: what each tenant may do, kept in one shared place (PostgreSQL) and checked by
every process against the same rows, so that N processes admit exactly what one would.

tenant_limits.py  one tenant's limits document, section by section, with the defaults
admission.py      submissions by the workflow's cost tier, per tenant and globally; forks,
                  patches and approvals
cost_tier.py      the cost tier of a workflow version (its agent nodes)
admission_check.py  whether a command is admitted: one statement, exact across processes
execution.py      fair execution: per-tenant slots per node type, concurrency keys, named
                  rate limits shared by the workers
concurrency_leases.py  the slots of a concurrency key, leased across worker processes
rate_buckets.py   named rate limits: one bucket per tenant and name, one statement a take
budgets.py        agent budgets: tokens and money per run, max_tokens, allowed models
store.py          the ``tenant_limits`` table: read (remembered briefly by each process),
                  write by an admin key
changes.py        hearing of a changed document at once (LISTEN), in every process
"""
