# The AOB image: every service and the CLI. docker-compose.yml runs one container per service.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 aob
WORKDIR /app

# Dependencies first (cached layer), then the code.
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY infra ./infra
COPY cas ./cas
COPY auth ./auth
COPY command_api ./command_api
COPY query_api ./query_api
COPY processors ./processors
COPY run_model ./run_model
COPY projections ./projections
COPY read_model ./read_model
COPY workers ./workers
COPY templating ./templating
COPY cli ./cli
COPY examples ./examples
RUN pip install .

USER aob
# Services bind 0.0.0.0 inside their container; compose publishes them on 127.0.0.1 only.
ENV AOB_HOST=0.0.0.0
CMD ["aob", "--help"]
