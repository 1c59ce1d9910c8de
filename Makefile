# Tern. `make run` is the main job on its built-in default; `make test` is what CI runs.
SWIFT       ?= swift
BUILD_FLAGS := --explicit-target-dependency-import-check error
PYTHON      ?= /usr/bin/python3
CONFIG      ?= configs/example.toml
OUT         ?= out
FUZZ_SECONDS ?= 30

.PHONY: all build release run test unit-test outside-test config-test ternd-test netns-test tsan-test fuzz fuzz-build bench bench-build bench-quick clean

all: build

build:
	$(SWIFT) build $(BUILD_FLAGS)

release:
	$(SWIFT) build -c release $(BUILD_FLAGS) --product ternctl
	$(SWIFT) build -c release $(BUILD_FLAGS) --product ternd

# The main job: ternd forwarding over virtual devices (net_pcap in and out; no NIC, no hugepages).
# A generated demo pcap goes in; ternd stops when it has been idle for a second, prints its final
# counters as JSON; tshark shows what came out.
EAL_ARGS ?= -l 0-1 --no-huge -m 512 --no-pci --no-shconf --file-prefix tern-run --log-level lib.eal:error
run: release
	@mkdir -p $(OUT)
	$(PYTHON) Tests/outside/make_pcap.py --demo $(OUT)/demo-in.pcap
	.build/release/ternctl check $(CONFIG)
	.build/release/ternd $(EAL_ARGS) --vdev net_pcap0,rx_pcap=$(OUT)/demo-in.pcap,tx_pcap=$(OUT)/demo-out.pcap \
		-- --config $(CONFIG) --stop-when-idle 1 --idle-sleep-us 100 --stats-json $(OUT)/stats.json; \
		status=$$?; rm -rf /var/run/dpdk/tern-run; exit $$status
	@echo "--- what ternd transmitted, as tshark decodes it (first 12 frames; outer header first):"
	@$(PYTHON) Tests/outside/tshark_view.py $(OUT)/demo-out.pcap 12

test: unit-test config-test outside-test ternd-test netns-test tsan-test fuzz bench-quick

unit-test:
	$(SWIFT) build $(BUILD_FLAGS) --build-tests
	$(SWIFT) test $(BUILD_FLAGS) --skip-build; status=$$?; rm -rf /var/run/dpdk/tern-swift-test-*; exit $$status

# Every file in configs/ must pass `ternctl check`; every file in Tests/outside/bad-configs must fail with 78.
config-test: build
	Tests/outside/check_configs.sh .build/debug/ternctl

# tshark and scapy check what `ternctl simulate` emits.
outside-test: release
	$(PYTHON) Tests/outside/test_simulate.py .build/release/ternctl

# ternd over net_pcap: same bytes as simulate, two workers, separate ports, reload under load,
# start-up errors.
ternd-test: build
	$(PYTHON) Tests/outside/test_ternd.py .build/debug/ternd .build/debug/ternctl

# Real clients and servers in network namespaces talk through ternd (net_af_packet on veth): TCP,
# UDP and ping over every encapsulation, backends decapsulating with XDP and answering directly
# (DSR), path MTU discovery both ways over 1500-byte links, connections moved between two ternd
# nodes mid-flow, a drain on reload.
netns-test: build
	$(PYTHON) Tests/outside/test_netns.py .build/debug/ternd

# The snapshot cell (QSBR) under ThreadSanitizer: concurrent readers and a publishing writer.
tsan-test:
	$(SWIFT) test --sanitize=thread --scratch-path .build-tsan --filter SnapshotCellTests

# swiftc's -sanitize=fuzzer links libFuzzer but does not turn on coverage by itself here: the
# -sanitize-coverage flags are what give libFuzzer its feedback (it reports "Loaded N counters").
fuzz-build:
	$(SWIFT) build --product TernFuzz --sanitize=fuzzer --sanitize=address --scratch-path .build-fuzz \
		-Xswiftc -DTERN_LIBFUZZER -Xswiftc -sanitize-coverage=edge,inline-8bit-counters,pc-table,trace-cmp

# A short libFuzzer run of the parser and pipeline (longer: make fuzz FUZZ_SECONDS=600).
fuzz: fuzz-build
	@mkdir -p $(OUT)/fuzz-corpus
	.build-fuzz/debug/TernFuzz -max_total_time=$(FUZZ_SECONDS) -max_len=512 $(OUT)/fuzz-corpus

# Benchmarks (figures go to bench/RESULTS.md; no assertions on their values). bench/run.py runs
# TernBench (pipeline, dpdk and Maglev modes), adds callgrind instructions per packet, fails if the
# packet path calls an allocator, reference counting or a lock, writes out/bench.json and
# out/bench.png. bench-quick (CI's smoke run) uses the small scenario variants and short trials.
bench-build:
	$(SWIFT) build -c release --product TernBench

bench: bench-build release
	$(PYTHON) bench/run.py
	$(PYTHON) bench/ternd_rate.py .build/release/ternd

bench-quick: bench-build
	$(PYTHON) bench/run.py --quick

clean:
	rm -rf .build .build-fuzz .build-tsan $(OUT)
