"""What starts a run besides ``POST /v1/runs``, or wakes one that waits on the outside world.

signatures.py  a webhook delivery's HMAC: how it is computed and judged (pure)
hooks.py       the ``webhooks`` table (a hook's workflow and sealed secret) and the
               signatures already used, kept for the replay window
schedules.py   a schedule's cadence (cron in a time zone, or an interval) and which moments
               to fire after a gap (pure; the clock is ``processors.schedule_clock``)
schedule_store.py  the ``schedules`` and ``schedule_firings`` tables: the command side's
               view of the schedules' events, and what the clock did at each moment
"""
