"""``python -m command_api``: serve the REST API on AOB_HOST:AOB_COMMAND_API_PORT."""

from __future__ import annotations

import uvicorn

from command_api.app import create_app
from infra.settings import get_settings


def main() -> None:
    settings = get_settings()
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.command_api_port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
