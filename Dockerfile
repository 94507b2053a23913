# syntax=docker/dockerfile:1
# gridwatch's image: a static binary on a distroless base, run as a non-root
# user. It serves with an external ClickHouse (clickhouse.addr): the image
# holds no ClickHouse server for the managed mode. Build from the repository
# root:
#   docker build -t gridwatch:dev --build-arg VERSION=$(git describe --always) .
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
# CGO off: a static binary that needs no libc in the runtime image. The web
# console's bundle is committed (web/dist) and embedded; no Node is needed.
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/gridwatch ./cmd/gridwatch \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/gridwatch /usr/local/bin/gridwatch
# data_dir: the disk spool (keep it on a volume: batches wait there while
# ClickHouse is away) and, unless secrets.key_file points elsewhere, the key
# sealing the registry's RTSP passwords.
COPY --from=build --chown=65532:65532 /out/data /var/lib/gridwatch
ENV GRIDWATCH_DATA_DIR=/var/lib/gridwatch \
    GRIDWATCH_LOG_FORMAT=json
VOLUME /var/lib/gridwatch
USER 65532:65532
# MQTT, MQTT over TLS (mqtt.tls_listen), HTTP API and /metrics.
EXPOSE 1883 8883 8080
ENTRYPOINT ["/usr/local/bin/gridwatch"]
CMD ["serve"]
