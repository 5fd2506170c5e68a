"""The command side's REST API: authenticate, validate, rate-limit, append an event."""
