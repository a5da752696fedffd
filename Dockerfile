# The router (and the console) in a small image.
#   docker build -t aegis-ipc .
#   docker run --rm -p 8000:8000 -e AEGIS_NATS_URL=nats://nats:4222 \
#       -e AEGIS_ADMIN_TOKEN=... aegis-ipc
# It listens on 0.0.0.0, so it refuses to start without a token (or AEGIS_INSECURE=1).
FROM python:3.13-slim
WORKDIR /src
COPY pyproject.toml README.md ./
COPY sdk sdk
COPY router router
COPY console console
RUN pip install --no-cache-dir . && rm -rf /src
WORKDIR /
USER nobody
ENV AEGIS_HTTP_HOST=0.0.0.0 \
    AEGIS_LOG_FORMAT=json \
    AEGIS_DATA_DIR=/tmp/aegis
EXPOSE 8000
ENTRYPOINT ["aegis-router"]
