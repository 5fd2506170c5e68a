"""What starts a run besides ``POST /v1/runs``, or wakes one that waits on the outside world.

signatures.py  a webhook delivery's HMAC: how it is computed and judged (pure)
hooks.py       the ``webhooks`` table (a hook's workflow and sealed secret) and the
               signatures already used, kept for the replay window
"""
