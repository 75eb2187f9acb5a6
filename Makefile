# ordo's make targets. The two that matter:
#   make test   - everything the tests need, then all tests (what CI runs)
#   make dev    - go run ./cmd/ordo dev
.PHONY: test dev build vet fmt clean

test:
	bash test/run.sh

dev:
	go run ./cmd/ordo dev

build:
	CGO_ENABLED=0 go build -trimpath -o bin/ordo ./cmd/ordo

vet:
	gofmt -l . && go vet ./...

clean:
	rm -rf bin .ordo
