# One image for every Shiori service; docker-compose.yml picks the service with its command:
#   docker run --rm -e AMQP_URI=... shiori python -m shiori serve catalog
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore

COPY . /src
RUN pip install /src 'setuptools<81' && rm -rf /src

RUN useradd --system --uid 10001 --user-group --create-home --home-dir /var/lib/shiori shiori
USER shiori
WORKDIR /var/lib/shiori
ENV SHIORI_DATA_DIR=/var/lib/shiori

EXPOSE 8000
CMD ["python", "-m", "shiori", "serve", "gateway"]
