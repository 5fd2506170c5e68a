"""A local OpenAI-compatible server with scripted replies.

Tests script it to exercise the agent node (answers, tool calls, 429s, 400s), and ``aob up``
runs it for the agents when no ``OPENAI_API_KEY`` is set, so the demo works offline.

    scripts.py   the script format, the recorded requests, the default reply
    app.py       the HTTP routes (Chat Completions shape, admin routes)
    serve.py     run it in this event loop (tests) or as a process
    client.py    register scripts and read requests over HTTP
    mode.py      when agents use it, and what users are told
"""
