"""``python -m query_api``: serve GraphQL on AOB_HOST:AOB_QUERY_API_PORT."""

from __future__ import annotations

from infra.gc_tuning import tune as tune_gc
from infra.http_service import serve
from infra.settings import get_settings
from query_api.app import create_app


def main() -> None:
    settings = get_settings()
    app = create_app(settings)
    tune_gc(settings.gc_gen0)
    serve(app, settings.host, settings.query_api_port)


if __name__ == "__main__":
    main()
