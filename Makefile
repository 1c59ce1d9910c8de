# Tern. `make run` is the main job on its built-in default; `make test` is what CI runs.
SWIFT       ?= swift
BUILD_FLAGS := --explicit-target-dependency-import-check error
PYTHON      ?= /usr/bin/python3
CONFIG      ?= configs/example.toml
OUT         ?= out
FUZZ_SECONDS ?= 30

.PHONY: all build release run test unit-test outside-test config-test fuzz fuzz-build bench-quick clean

all: build

build:
	$(SWIFT) build $(BUILD_FLAGS)

release:
	$(SWIFT) build -c release $(BUILD_FLAGS) --product ternctl

# The main job (for now): replay a generated demo pcap through the packet path with the example
# config, print the counters and a tshark view of what Tern would transmit.
run: release
	@mkdir -p $(OUT)
	$(PYTHON) Tests/outside/make_pcap.py --demo $(OUT)/demo-in.pcap
	.build/release/ternctl check $(CONFIG)
	.build/release/ternctl simulate --config $(CONFIG) --in $(OUT)/demo-in.pcap --out $(OUT)/demo-out.pcap
	@echo "--- what Tern transmits, as tshark decodes it (first 12 frames; outer header first):"
	@$(PYTHON) Tests/outside/tshark_view.py $(OUT)/demo-out.pcap 12

test: unit-test config-test outside-test fuzz

unit-test:
	$(SWIFT) build $(BUILD_FLAGS) --build-tests
	$(SWIFT) test $(BUILD_FLAGS) --skip-build

# Every file in configs/ must pass `ternctl check`; every file in Tests/outside/bad-configs must fail with 78.
config-test: build
	Tests/outside/check_configs.sh .build/debug/ternctl

# tshark and scapy check what `ternctl simulate` emits.
outside-test: release
	$(PYTHON) Tests/outside/test_simulate.py .build/release/ternctl

# swiftc's -sanitize=fuzzer links libFuzzer but does not turn on coverage by itself here: the
# -sanitize-coverage flags are what give libFuzzer its feedback (it reports "Loaded N counters").
fuzz-build:
	$(SWIFT) build --product TernFuzz --sanitize=fuzzer --sanitize=address --scratch-path .build-fuzz \
		-Xswiftc -DTERN_LIBFUZZER -Xswiftc -sanitize-coverage=edge,inline-8bit-counters,pc-table,trace-cmp

# A short libFuzzer run of the parser and pipeline (longer: make fuzz FUZZ_SECONDS=600).
fuzz: fuzz-build
	@mkdir -p $(OUT)/fuzz-corpus
	.build-fuzz/debug/TernFuzz -max_total_time=$(FUZZ_SECONDS) -max_len=512 $(OUT)/fuzz-corpus

# Benchmarks (figures go to bench/RESULTS.md; no assertions on them).
bench-quick:
	$(SWIFT) build -c release --product TernBench
	.build/release/TernBench

clean:
	rm -rf .build .build-fuzz $(OUT)
