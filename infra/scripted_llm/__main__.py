"""``python -m infra.scripted_llm --port N``: the scripted model on 127.0.0.1:N."""

from __future__ import annotations

import argparse

from infra.scripted_llm.serve import serve_forever
from infra.settings import get_settings


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m infra.scripted_llm")
    parser.add_argument("--port", type=int, default=get_settings().scripted_llm_port)
    serve_forever(parser.parse_args().port)


if __name__ == "__main__":
    main()
