"""``python -m query_api``: serve GraphQL on AOB_HOST:AOB_QUERY_API_PORT."""

from __future__ import annotations

import uvicorn

from infra.settings import get_settings
from query_api.app import create_app


def main() -> None:
    settings = get_settings()
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.query_api_port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
