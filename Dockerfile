# The AOB image: every service and the CLI. docker-compose.yml runs one container per service.
#
# The project is copied as a whole (`COPY . .`) and .dockerignore leaves out what is no part of
# it (virtualenvs, caches, .git, tests), so a new package is in the image as soon as
# pyproject.toml lists it; this file never names packages. tests/unit/test_docker_image.py
# installs exactly what this file copies and imports every service from that install.
#
# The console's bundle, once it exists, is built in a stage of its own ahead of this one
# (e.g. `FROM node:<lts>-slim AS console`, running the bundler), and this stage takes only its
# output (`COPY --from=console <dist> ./console/...`), so Node never reaches the image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 aob
WORKDIR /app

COPY . .
RUN pip install .

USER aob
# Services bind 0.0.0.0 inside their container; compose publishes them on 127.0.0.1 only.
ENV AOB_HOST=0.0.0.0
CMD ["aob", "--help"]
