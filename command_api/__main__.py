"""``python -m command_api``: serve the REST API on AOB_HOST:AOB_COMMAND_API_PORT."""

from __future__ import annotations

from command_api.app import create_app
from infra.gc_tuning import tune as tune_gc
from infra.http_service import serve
from infra.settings import get_settings


def main() -> None:
    settings = get_settings()
    app = create_app(settings)
    tune_gc(settings.gc_gen0)
    serve(app, settings.host, settings.command_api_port)


if __name__ == "__main__":
    main()
