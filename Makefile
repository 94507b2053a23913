# gridwatch — see README.md. `make demo` runs a simulated city, `make test`
# runs every check; both install what they need on Debian first.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

.PHONY: all build deps demo test bench clean

all: build

deps:
	./deploy/install-deps.sh

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/gridwatch ./cmd/gridwatch
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/gridsim ./cmd/gridsim

demo: deps build
	./bin/gridwatch demo

test:
	./deploy/test.sh

bench: deps build
	./deploy/bench.sh

clean:
	rm -rf bin
