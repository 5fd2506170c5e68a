"""Fair execution in a worker process (issue: one tenant must not take every slot).

queue.py     the pure order of starts: slots of the process, per tenant and type, round
             robin over tenants, topic order within one, gates parked apart
dispatch.py  starts what the queue lets start, through the gates shared with other
             processes (concurrency key leases, rate limits: ``limits``), and tells the run
             why a task waits (``run.node_queued``)
reasons.py   those reasons in words
"""
