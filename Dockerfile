# syntax=docker/dockerfile:1
# ordo's image: one static binary on distroless, running as non-root.
#
#   docker build -t ordo:dev --build-arg VERSION=$(git describe --tags --always --dirty) .
#   docker run --rm ordo:dev version
#
# The default command is one replica with the demo config baked in at
# /etc/ordo (copied from examples/orders); mount your own config over it.
# The build flags match the Makefile's `build` target (test/compose checks it).

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/ordo-dev/ordo/internal/app.Version=${VERSION}" \
      -o /out/ordo ./cmd/ordo \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ordo /usr/local/bin/ordo
COPY examples/orders/ /etc/ordo/
# writable data dir for `ordo registry --data-dir /var/lib/ordo` (a named
# volume mounted here inherits this ownership)
COPY --from=build --chown=65532:65532 /out/data /var/lib/ordo
# distroless' "nonroot" user
USER 65532:65532
WORKDIR /var/lib/ordo
# 9464: admin (/livez, /readyz, /metrics); 8081: `ordo registry`
EXPOSE 9464 8081
ENTRYPOINT ["/usr/local/bin/ordo"]
CMD ["run", "--config", "/etc/ordo/ordo.yaml"]
