# byoai: convenience wrapper around CMake.
#   make run    install build deps, build, and generate a story with the test model
#   make test   install build and test deps (chromium, node, npm packages, the
#               aarch64 cross compiler and qemu-user), build with ASan+UBSan, run
#               every test (unit, integration, e2e, NEON kernels under qemu)
#   make bench  build optimized and run the benchmarks (JSON on stdout)
#   make bench-cluster  only the cluster benchmark (1, 2, 3 local nodes)
#   make bench-ttft     only time to first token of conversations taking turns (vs llama-server)
#   make fuzz   build the libFuzzer targets with clang and run each for
#               FUZZ_SECONDS (default 30; FUZZ_SECONDS=600 is the real run),
#               FUZZ_TARGETS="fuzz_gguf ..." for some only (fuzz/run.sh)
SHELL   := /bin/bash
JOBS    ?= $(shell nproc)
SHARED  ?= $(abspath ../shared)
RELEASE := build/release
TESTDIR := build/test
FUZZDIR := build/fuzz
MODEL   ?= $(SHARED)/models/stories260K.gguf
PROMPT  ?= Once upon a time

.PHONY: all deps build run test test-build bench bench-cluster bench-ttft fuzz clean e2e-deps

all: build

deps:
	@bash scripts/install-deps.sh

build: deps
	@cmake -S . -B $(RELEASE) -DCMAKE_BUILD_TYPE=Release -DBYOAI_TESTS=OFF -DBYOAI_SHARED_DIR=$(SHARED) >/dev/null
	@cmake --build $(RELEASE) -j $(JOBS)

run: build
	$(RELEASE)/byoai run $(MODEL) -p "$(PROMPT)" -n 100 --temp 0

test-build: deps
	@cmake -S . -B $(TESTDIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBYOAI_SANITIZE=ON -DBYOAI_SHARED_DIR=$(SHARED) >/dev/null
	@cmake --build $(TESTDIR) -j $(JOBS)

# What the node tests need: Debian's chromium and node/npm, then the npm
# packages pinned in tests/node/package-lock.json (the openai client,
# playwright-core). npm ci runs only when the lock file changed.
e2e-deps:
	@bash scripts/install-deps.sh --e2e --arm
	@if [ ! -f tests/node/node_modules/.byoai-lock ] || ! cmp -s tests/node/package-lock.json tests/node/node_modules/.byoai-lock; then \
	  echo "byoai: npm ci in tests/node" >&2; \
	  npm ci --prefix tests/node --no-audit --no-fund --loglevel=error && \
	  cp tests/node/package-lock.json tests/node/node_modules/.byoai-lock; \
	fi

test: test-build e2e-deps
	cd $(TESTDIR) && ctest --output-on-failure -j $(JOBS) --timeout 900

bench: build
	bash bench/run.sh $(RELEASE)

bench-cluster: build
	bash bench/cluster_bench.sh $(RELEASE)

bench-ttft: build
	BENCH_ONLY=ttft bash bench/run.sh $(RELEASE)

fuzz: deps
	@cmake -S . -B $(FUZZDIR) -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBYOAI_SANITIZE=ON -DBYOAI_FUZZ=ON -DBYOAI_TESTS=OFF -DBYOAI_SHARED_DIR=$(SHARED) >/dev/null
	@cmake --build $(FUZZDIR) -j $(JOBS)
	bash fuzz/run.sh $(FUZZDIR) $(FUZZ_TARGETS)

clean:
	rm -rf build
