# Multi-stage build: a static binary on a minimal, non-root image.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
# The patched embedded broker is a replaced module; go mod download reads its go.mod.
COPY third_party/kfake/go.mod third_party/kfake/go.sum ./third_party/kfake/
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/sagarunner ./cmd/sagarunner

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/sagarunner /usr/local/bin/sagarunner
COPY --from=build /src/sagas /etc/sagarunner/sagas
USER nonroot:nonroot
EXPOSE 8080
ENV SAGARUNNER_SAGAS=/etc/sagarunner/sagas
ENTRYPOINT ["/usr/local/bin/sagarunner", "run"]
CMD ["--config", "/etc/sagarunner/sagarunner.yaml"]
