# Tern. `make run` is the main job on its built-in default; `make test` is what CI runs.
SHELL       := /bin/bash
SWIFT       ?= swift
BUILD_FLAGS := --explicit-target-dependency-import-check error
PYTHON      ?= /usr/bin/python3
CONFIG      ?= configs/example.toml
OUT         ?= out
PREFIX      ?= /usr/local
SYSCONFDIR  ?= /etc
DESTDIR     ?=
FUZZ_SECONDS ?= 15
FUZZ_TARGETS ?= frame burst toml config keepalived ipvsadm

.PHONY: docs docs-check lab lab-down lab-test fleet-test disruption-test all ebpf build release run install install-test import-test metrics-test hostile-test test lint format unit-test outside-test config-test leak-test ternd-test netns-test tsan-test fuzz fuzz-long fuzz-build bench bench-build bench-quick clean

all: build

# Tern's XDP program (AF_XDP ports), where ternd looks for it beside its bin directory.
EBPF_OBJECTS := .build/lib/tern/tern_xdp.o .build/lib/tern/tern_backend.o
CLANG ?= $(shell PATH=/opt/swift/usr/bin:$$PATH command -v clang)
ebpf: $(EBPF_OBJECTS)
.build/lib/tern/%.o: ebpf/%.c
	@mkdir -p $(dir $@)
	$(CLANG) -O2 -g -Wall -Werror -target bpf -I/usr/include/x86_64-linux-gnu -c $< -o $@

build: ebpf
	$(SWIFT) build $(BUILD_FLAGS)

release: ebpf
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

# Installs ternd, ternctl, their man pages (ternctl's generated from its argument parser), the
# systemd units (ternd; the flow tables' huge-page tmpfs; the BGP feed with BIRD; a drop-in for Debian's
# exabgp.service), Tern's XDP program (PREFIX/lib/tern, where ternd looks for it) and the reference
# config (also as SYSCONFDIR/tern/tern.toml.example).
install: release
	$(SWIFT) package --allow-writing-to-package-directory generate-manual --section 8
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man8 $(DESTDIR)$(PREFIX)/lib/systemd/system \
		$(DESTDIR)$(PREFIX)/share/doc/tern $(DESTDIR)$(SYSCONFDIR)/tern $(DESTDIR)$(PREFIX)/lib/tern
	install -m 755 .build/release/ternd .build/release/ternctl $(DESTDIR)$(PREFIX)/bin/
	install -m 644 $(EBPF_OBJECTS) $(DESTDIR)$(PREFIX)/lib/tern/
	install -m 644 .build/plugins/GenerateManual/outputs/ternctl/*.8 $(DESTDIR)$(PREFIX)/share/man/man8/
	sed -e 's|@DOCDIR@|$(PREFIX)/share/doc/tern|g' -e "s|@RESTART_ONLY@|$$(.build/release/ternctl reference restart-only)|g" \
		configs/man/ternd.8 > $(DESTDIR)$(PREFIX)/share/man/man8/ternd.8
	install -d $(DESTDIR)$(PREFIX)/lib/systemd/system/exabgp.service.d
	for unit in ternd.service tern-bird-feed.service run-tern-flows.mount exabgp.service.d/tern.conf; do \
		sed -e 's|@BINDIR@|$(PREFIX)/bin|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' configs/systemd/$$unit \
			> $(DESTDIR)$(PREFIX)/lib/systemd/system/$$unit || exit 1; \
	done
	install -m 644 configs/reference.toml docs/*.md $(DESTDIR)$(PREFIX)/share/doc/tern/
	install -m 644 configs/reference.toml $(DESTDIR)$(SYSCONFDIR)/tern/tern.toml.example

# make install into a staging prefix (absolute, so the unit's paths exist here); the unit must pass
# systemd-analyze verify (its binaries, its man pages) and the unit's own config check must pass.
STAGE := $(CURDIR)/$(OUT)/stage
install-test:
	rm -rf $(STAGE)
	$(MAKE) install PREFIX=$(STAGE)/usr SYSCONFDIR=$(STAGE)/etc
	cp $(STAGE)/etc/tern/tern.toml.example $(STAGE)/etc/tern/tern.toml
	MANPATH=$(STAGE)/usr/share/man systemd-analyze verify $(STAGE)/usr/lib/systemd/system/ternd.service \
		$(STAGE)/usr/lib/systemd/system/tern-bird-feed.service $(STAGE)/usr/lib/systemd/system/run-tern-flows.mount
	$(STAGE)/usr/bin/ternctl check $(STAGE)/etc/tern/tern.toml
	test -s $(STAGE)/usr/lib/tern/tern_xdp.o
	$(STAGE)/usr/bin/ternd --version && $(STAGE)/usr/bin/ternctl --version
	! grep -n '@[A-Z_]*@' $(STAGE)/usr/share/man/man8/ternd.8
	grep -q '$(STAGE)/usr/share/doc/tern/reference.toml' $(STAGE)/usr/share/man/man8/ternd.8
	test -s $(STAGE)/usr/share/doc/tern/config-reference.md
	@echo "ok: make install staged $$(find $(STAGE) -type f | wc -l) files; systemd-analyze verify passed"

# Each stage runs as its own make, timed; the times are printed at the end (and at a failure).
TEST_STAGES := lint unit-test config-test leak-test install-test outside-test ternd-test hostile-test import-test \
	metrics-test netns-test lab-test fleet-test disruption-test tsan-test fuzz bench-quick
test:
	@times=""; all=$$(date +%s); \
	for stage in $(TEST_STAGES); do \
		start=$$(date +%s); \
		$(MAKE) --no-print-directory $$stage; status=$$?; \
		times="$$times$$(printf '  %-14s %5d s' $$stage $$(( $$(date +%s) - start )))\n"; \
		if [ $$status -ne 0 ]; then printf "make test: stage %s failed\nstage times:\n$$times" $$stage; exit $$status; fi; \
	done; \
	printf "make test: every stage passed in %d s\nstage times:\n$$times" $$(( $$(date +%s) - all ))

# swift-format (the toolchain's `swift format`) with the tree's .swift-format: any difference fails.
# `make format` rewrites the files.
FORMATTED := Package.swift Sources Tests bench/TernBench
lint:
	$(SWIFT) format lint --strict -r $(FORMATTED)

format:
	$(SWIFT) format format -i -r $(FORMATTED)

unit-test: ebpf
	$(SWIFT) build $(BUILD_FLAGS) --build-tests
	$(SWIFT) test $(BUILD_FLAGS) --skip-build; status=$$?; rm -rf /var/run/dpdk/tern-swift-test-*; exit $$status

# Every file in configs/ must pass `ternctl check`; every file in Tests/outside/bad-configs must fail with 78.
# The generated references must equal what the sources generate.
config-test: build
	Tests/outside/check_configs.sh .build/debug/ternctl
	$(MAKE) --no-print-directory docs-check

# docs/config-reference.md (from ConfigSchema and configs/reference.toml's comments) and
# docs/metrics-reference.md (from MetricsCatalog) are generated: `make docs` writes them,
# docs-check fails when the checked-in files differ.
docs: build
	.build/debug/ternctl reference config configs/reference.toml > docs/config-reference.md
	.build/debug/ternctl reference metrics > docs/metrics-reference.md

docs-check: build
	.build/debug/ternctl reference config configs/reference.toml | diff -u docs/config-reference.md - \
		|| { echo "docs/config-reference.md is stale: run make docs"; exit 1; }
	.build/debug/ternctl reference metrics | diff -u docs/metrics-reference.md - \
		|| { echo "docs/metrics-reference.md is stale: run make docs"; exit 1; }

# `ternctl check` under AddressSanitizer and LeakSanitizer over every config file, good and bad:
# any leak or memory error fails (config loads leaked with the TOML library Tern used before).
leak-test:
	$(SWIFT) build --product ternctl --sanitize=address --scratch-path .build-asan
	Tests/outside/leak_check.sh .build-asan/debug/ternctl

# tshark and scapy check what `ternctl simulate` emits.
outside-test: release
	$(PYTHON) Tests/outside/test_simulate.py .build/release/ternctl

# ternd over net_pcap: same bytes as simulate, two workers, separate ports, reload under load,
# start-up errors and their causes, SIGTERM during a long reload; then a reload soak under load
# (RSS before and after 40 reloads of 100 VIPs x 100 backends).
ternd-test: build
	$(PYTHON) Tests/outside/test_ternd.py .build/debug/ternd .build/debug/ternctl
	$(PYTHON) Tests/outside/reload_soak.py .build/debug/ternd --reloads 40

# Hostile clients against a release ternd (net_null): idle metrics connections under a low
# descriptor limit beside a health-checked backend, never-reading control-socket clients, a
# 10,000-backend scrape beside ten scrapers, malformed and HTTP/0.9 requests.
hostile-test: release
	$(PYTHON) Tests/outside/test_hostile.py .build/release/ternd .build/release/ternctl

# IPVS shops' files: keepalived's own config check (keepalived -t) and ternctl import agree; a
# 50-service keepalived.conf imports to the hand-written config's Maglev tables; export then import
# round-trips; follow mode ([import] keepalived) under a running ternd, edits and a broken file.
import-test: build
	$(PYTHON) Tests/outside/test_import.py .build/debug/ternd .build/debug/ternctl

# Prometheus: promtool checks ternd's /metrics, a real Prometheus server scrapes it and answers
# PromQL; DPDK's dpdk-telemetry.py asks ternd's /tern/stats and /tern/vips; dpdk-dumpcap captures a
# running ternd's port (hugepages reserved by the test).
metrics-test: build
	$(PYTHON) Tests/outside/test_metrics.py .build/debug/ternd .build/debug/ternctl

# Real clients and servers in network namespaces talk through ternd (net_af_packet on veth): TCP,
# UDP and ping over every encapsulation, backends decapsulating with XDP and answering directly
# (DSR), path MTU discovery both ways over 1500-byte links, connections moved between two ternd
# nodes mid-flow, a drain on reload, the host path and BGP over it. Then failures end to end:
# nginx and unbound backends killed, frozen and cut off, two nodes behind a BIRD router with ECMP
# fed by ExaBGP, SIGTERM under wrk, SIGKILL.
netns-test: build
	$(PYTHON) Tests/outside/test_netns.py .build/debug/ternd
	$(PYTHON) Tests/outside/test_failover.py .build/debug/ternd

# The lab (docs/operator-guide.md's tutorial): client, BIRD router with ECMP, two Tern nodes fed
# by ExaBGP, nginx and unbound backends, Prometheus, in network namespaces lab-*; left running.
# lab-test builds it, runs every command of the tutorial and checks its output, and removes it.
lab: build
	$(PYTHON) Tests/outside/lab.py up .build/debug/ternd

lab-down:
	$(PYTHON) Tests/outside/lab.py down

lab-test: build
	@mkdir -p $(OUT)
	$(PYTHON) Tests/outside/lab.py up .build/debug/ternd > $(OUT)/lab-up.log 2>&1 || { cat $(OUT)/lab-up.log; $(PYTHON) Tests/outside/lab.py down; exit 1; }
	$(PYTHON) Tests/outside/lab.py tutorial docs/operator-guide.md .build/debug; status=$$?; \
		$(PYTHON) Tests/outside/lab.py down; exit $$status

# A fleet from etcd: a three-member etcd cluster and three ternd nodes in namespaces; puts, fleet
# drains, invalid documents, a member down, quorum lost and back, a node killed, health by quorum.
fleet-test: build
	$(PYTHON) Tests/outside/test_fleet.py .build/debug/ternd

# What clients see while a site changes: two nodes behind a BIRD router with ECMP (one in NIC mode
# with a persistent TAP and BFD, one in AF_XDP mode), three nginx backends, 50 keep-alive
# connections, new connections every 50 ms and 50 ms pings, through planned restarts, crashes,
# reloads, drains, health changes and an ECMP move; prints per event what broke.
disruption-test: build
	$(PYTHON) Tests/outside/test_disruption.py .build/debug/ternd

# Cross-thread handoffs under ThreadSanitizer: the snapshot cell (QSBR: concurrent readers and a
# publishing writer), live counter blocks (a worker adding, the control thread reading) and the
# control exchange (scrape and telemetry threads asking, the control thread answering).
tsan-test:
	$(SWIFT) test --sanitize=thread --scratch-path .build-tsan --filter "SnapshotCellTests|CounterBlockTests|ControlExchangeTests"

# swiftc's -sanitize=fuzzer links libFuzzer but does not turn on coverage by itself here: the
# -sanitize-coverage flags are what give libFuzzer its feedback (it reports "Loaded N counters").
fuzz-build:
	$(SWIFT) build --product TernFuzz --sanitize=fuzzer --sanitize=address --scratch-path .build-fuzz \
		-Xswiftc -DTERN_LIBFUZZER -Xswiftc -sanitize-coverage=edge,inline-8bit-counters,pc-table,trace-cmp

# A short libFuzzer run of each target (TERN_FUZZ_TARGET: one frame through the pipeline, bursts
# through processBurst with frames up to 9,216 bytes, the TOML parser, the config loader), seeded
# with every frame and config the tests use; crashes, leaks (LeakSanitizer), inputs slower than
# 10 s and over 4 GiB of memory fail. `make fuzz-long` runs each for an hour (FUZZ_SECONDS=...).
fuzz: fuzz-build
	$(PYTHON) Tests/outside/make_fuzz_seeds.py $(OUT)/fuzz-seeds
	@for t in $(FUZZ_TARGETS); do \
		mkdir -p $(OUT)/fuzz-corpus/$$t; \
		if [ $$t = frame ]; then max=10000; else max=65536; fi; \
		echo "fuzz target $$t ($(FUZZ_SECONDS) s)"; \
		TERN_FUZZ_TARGET=$$t .build-fuzz/debug/TernFuzz -max_total_time=$(FUZZ_SECONDS) -max_len=$$max -timeout=10 \
			-rss_limit_mb=4096 -print_final_stats=1 $(OUT)/fuzz-corpus/$$t $(OUT)/fuzz-seeds/$$t 2>&1 | tail -12; \
		test $${PIPESTATUS[0]} -eq 0 || exit 1; \
	done

fuzz-long:
	$(MAKE) fuzz FUZZ_SECONDS=3600

# Benchmarks (figures go to bench/RESULTS.md; no assertions on their values). bench/run.py runs
# TernBench (pipeline, dpdk and Maglev modes), adds callgrind instructions per packet, fails if the
# packet path calls an allocator, reference counting or a lock, writes out/bench.json,
# out/bench.png and out/bench.log (TernBench's full output) and prints a one-screen summary with
# ternd beside dpdk-testpmd. bench-quick (CI's smoke run) uses the small variants and short trials.
bench-build:
	$(SWIFT) build -c release --product TernBench

# `make bench SCENARIO=udp` runs one scenario (no Maglev builds, no ternd runs).
SCENARIO ?=
bench: bench-build release
	$(PYTHON) bench/run.py $(if $(SCENARIO),--scenario $(SCENARIO),--ternd .build/release/ternd)

bench-quick: bench-build
	$(PYTHON) bench/run.py --quick

clean:
	rm -rf .build .build-fuzz .build-tsan $(OUT)
