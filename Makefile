# Coffer. `make test` is the test command CI runs (.ci/run); `make run`
# starts cofferd with a software vault; `make vault` the software vault
# alone. See README.md.

GO      ?= go
STATE   ?= dev-state
LISTEN  ?= unix:$(STATE)/vault.sock
FUZZTIME ?= 30s
# Go minimises every new interesting input for up to this long (default 60s),
# with a pass quadratic in its size and no executions reported meanwhile.
FUZZMINIMIZE ?= 5s
BUILD   := build

# The portable packages that must also run as 32-bit ARM code (the device's
# architecture) under qemu-user.
ARM_PKGS := protocol protocol/realmkey protocol/releaselog applet/opaque applet/vault applet/store

.PHONY: all test test-go test-arm vectors fuzz bench bench-state bench-login bench-realms soak soak-host vault run run-hint clean

all: test

# Firmware targets (firmware, qemu, imx, test-firmware): see firmware/firmware.mk.
include firmware/firmware.mk

test: test-go test-arm test-firmware

test-go:
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 30m ./...

# Cross-compile the portable tests for GOOS=linux GOARCH=arm GOARM=7 and run
# them under qemu-arm, from each package's folder so testdata/ is found.
test-arm:
	@if ! command -v qemu-arm >/dev/null 2>&1; then \
		echo "test-arm: SKIPPED: qemu-arm not found (apt-get install qemu-user); 32-bit ARM tests not run"; \
		exit 0; \
	fi; \
	set -e; mkdir -p $(BUILD)/arm; \
	for p in $(ARM_PKGS); do \
		name=$$(echo $$p | tr / _); \
		GOOS=linux GOARCH=arm GOARM=7 $(GO) test -c -o $(BUILD)/arm/$$name.test ./$$p; \
		echo "=== qemu-arm -cpu cortex-a7 $$p"; \
		(cd $$p && qemu-arm -cpu cortex-a7 $(CURDIR)/$(BUILD)/arm/$$name.test -test.short -test.count=1) || exit 1; \
	done

# Regenerate every test vector with its independent generator (never from
# the code under test) and fail if any file changed: the generators are
# deterministic, so a difference is a change to a format. Needs the system
# Python with cbor2 and cryptography (Debian: python3-cbor2,
# python3-cryptography), and the age command-line tool (Debian: age) for the
# client's backup vectors; PYTHON_VECTORS picks another interpreter.
PYTHON_VECTORS ?= python3
VECTOR_DIRS = protocol/testdata applet/store/testdata/format applet/opaque/testdata/vectors client/testdata/vectors
vectors:
	cd protocol/testdata/vectors && $(PYTHON_VECTORS) gen_vectors.py
	cd protocol/testdata/registration && $(PYTHON_VECTORS) gen_vectors.py > vectors.json
	cd protocol/testdata/frames && $(PYTHON_VECTORS) gen_vectors.py > vectors.json
	cd applet/store/testdata/format && $(PYTHON_VECTORS) gen_format.py
	cd applet/opaque/testdata/vectors && $(GO) run gen_opaque.go
	cd client/testdata/vectors && $(PYTHON_VECTORS) gen_vectors.py
	cd protocol/testdata/realms && $(PYTHON_VECTORS) gen_vectors.py
	cd protocol/testdata/releaselog && $(PYTHON_VECTORS) gen_vectors.py
	git diff --exit-code -- $(VECTOR_DIRS)
	@# git diff does not see a case the generator added: no untracked file either.
	@test -z "$$(git status --porcelain --untracked-files=all -- $(VECTOR_DIRS))" || \
		{ git status --short --untracked-files=all -- $(VECTOR_DIRS); echo "vectors: files not in git"; exit 1; }

# Every fuzz target for FUZZTIME each (not part of `make test`).
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
		dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
		for t in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/func //'); do \
			echo "=== fuzz $$pkg $$t"; \
			$(GO) test $$pkg -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE); \
		done; \
	done

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# Route lookup and placement in cofferd's state at 10 thousand accounts
# against COFFER_BENCH_ACCOUNTS (default 10 million), on SQLite and on a
# PostgreSQL the benchmark starts itself; reports big/small per operation.
# Filling 10 million accounts takes minutes and some 5 GB under /tmp.
bench-state:
	$(GO) test -run '^$$' -bench '^BenchmarkState$$' -benchtime 3s -timeout 3h ./host/state

# Vault-side login CPU, in one script: the whole vault login (BenchmarkVaultLogin:
# KE1→KE2 and KE3→release through Handle), bare OPAQUE on circl
# (BenchmarkServerLogin) and bytemare's server (BenchmarkBytemareServerLogin),
# natively; then the first two as 32-bit ARM code under qemu-arm, where
# bytemare does not build.
bench-login:
	$(GO) test -run '^$$' -bench 'VaultLogin$$|ServerLogin$$' -benchtime 3s -count 3 ./applet/opaque ./applet/vault
	@if command -v qemu-arm >/dev/null 2>&1; then \
		mkdir -p $(BUILD)/arm; \
		GOOS=linux GOARCH=arm GOARM=7 $(GO) test -c -o $(BUILD)/arm/opaque.test ./applet/opaque; \
		GOOS=linux GOARCH=arm GOARM=7 $(GO) test -c -o $(BUILD)/arm/vault.test ./applet/vault; \
		echo "=== qemu-arm -cpu cortex-a7"; \
		(cd applet/opaque && qemu-arm -cpu cortex-a7 $(CURDIR)/$(BUILD)/arm/opaque.test -test.run '^$$' -test.bench 'ServerLogin$$' -test.benchtime 100x -test.count 3); \
		(cd applet/vault && qemu-arm -cpu cortex-a7 $(CURDIR)/$(BUILD)/arm/vault.test -test.run '^$$' -test.bench 'VaultLogin$$' -test.benchtime 100x -test.count 3); \
	else echo "bench-login: qemu-arm not found; 32-bit ARM numbers skipped"; fi

# Realms (protocol/REALMS.md 17), as ratios: vault CPU (cpu-ns/op) of one
# realm evaluation against one single-vault login, the two alternated
# five times; and recovery from 2 of 3 realms against a single vault with
# the real Argon2id (BenchmarkRecoverRatio alternates them and reports
# p50-ratio, p99-ratio and cpu-ratio).
bench-realms:
	for i in 1 2 3 4 5; do $(GO) test -run '^$$' -bench '^Benchmark(VaultLogin|RealmEvaluation)$$' -benchtime 2000x -cpu 1 ./applet/vault | grep '^Benchmark'; done
	$(GO) test -run '^$$' -bench '^BenchmarkRecover' -benchtime 20x -count 5 ./client

# Long randomised crash runs of the record store: SOAK times the default
# number of random traces, with a fresh seed each run.
SOAK ?= 100
soak:
	COFFER_SOAK=$(SOAK) COFFER_SEED=$$(date +%s) $(GO) test -count=1 -run 'TestCrashRandomLong' -timeout 2h -v ./applet/store

# The load soak of cofferd and the software vault (host/soak): SOAK_CLIENTS
# concurrent clients for SOAK_DURATION through cofferd's HTTP API to a
# softvault process, with the real Argon2id; every guess accounted for
# against the vault's receipts, then the vault killed, restarted and every
# account checked again. Prints a summary table. Other knobs: COFFER_SOAK_*
# in the environment (host/soak/config.go).
SOAK_DURATION ?= 10m
SOAK_CLIENTS  ?= 200
soak-host:
	@echo "load before: $$(cat /proc/loadavg 2>/dev/null)"
	COFFER_SOAK_DURATION=$(SOAK_DURATION) COFFER_SOAK_CLIENTS=$(SOAK_CLIENTS) \
		$(GO) test -count=1 -run '^TestSoakHost$$' -timeout 0 -v ./host/soak

# The main job: cofferd on 127.0.0.1:8420 with the software vault as a
# process of its own (INSECURE; `softvault dev`, stopped when cofferd exits)
# — or, with VAULT=qemu, the firmware booted in QEMU — a demo account, and
# what to type next. State lives in RUNDIR and survives restarts. cofferd
# links no vault code: it reaches either vault over a unix socket.
RUNDIR ?= run-state
RUN_DB  = sqlite:$(RUNDIR)/cofferd.db
ADDR   ?= 127.0.0.1:8420
BIN    := $(BUILD)/bin
# With REALMS=N (2 to 8): a realm set instead, N software vaults each behind
# its own cofferd on ADDR's port + 1 .. + N (8421-8423 for 3), state in
# RUNDIR/realm-1 .. realm-N, and RUNDIR/realms.json for `coffer init
# --realms` (scripts/run-realms.sh). Ctrl-C stops all of them.
# With HOSTS=N (2 to 8): ONE realm of N hosts instead, cofferd h1 .. hN on
# ADDR's port + 1 .. + N, each with two software vaults signed by one
# provisioning key and a peer listener (the realm's peer CA), all sharing
# one state database in RUNDIR/hosts (scripts/run-hosts.sh). Ctrl-C stops
# all of them.
run:
ifneq ($(HOSTS),)
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ ./host/cmd/cofferd ./client/cmd/coffer ./applet/softvault/cmd/softvault ./firmware/cmd/coffer-provision
	@scripts/run-hosts.sh $(HOSTS) $(abspath $(RUNDIR)) $(ADDR) $(abspath $(BIN))
else ifneq ($(REALMS),)
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ ./host/cmd/cofferd ./client/cmd/coffer ./applet/softvault/cmd/softvault ./firmware/cmd/coffer-provision
	@scripts/run-realms.sh $(REALMS) $(abspath $(RUNDIR)) $(ADDR) $(abspath $(BIN))
else
	@mkdir -p $(RUNDIR)/vault $(BIN) && chmod 700 $(RUNDIR) $(RUNDIR)/vault
	$(GO) build -o $(BIN)/ ./host/cmd/cofferd ./client/cmd/coffer ./applet/softvault/cmd/softvault ./firmware/cmd/coffer-provision
	@# The state database: created (or upgraded) by cofferd migrate, which
	@# serve never does on its own; an accounts.json of an older RUNDIR is
	@# imported into a new database.
	@new=; test -f $(RUNDIR)/cofferd.db || new=1; \
	 imp=; if [ -n "$$new" ] && [ -f $(RUNDIR)/accounts.json ]; then imp="-import-accounts $(RUNDIR)/accounts.json -host $$(uname -n)"; fi; \
	 $(BIN)/cofferd migrate -db $(RUN_DB) $$imp
	@test -s $(RUNDIR)/demo.token || \
		$(BIN)/cofferd account add -db $(RUN_DB) demo | \
		awk '$$1 == "token" { print $$2 }' > $(RUNDIR)/demo.token
	@chmod 600 $(RUNDIR)/demo.token
ifeq ($(VAULT),qemu)
	@$(MAKE) --no-print-directory firmware BOARD=qemu
	@mkdir -p $(QEMU_STATE) && rm -f $(QEMU_SOCK)
	@set -e; cd $(QEMU_STATE); \
	 $(QEMU) $(QEMU_ARGS) -kernel $(FW_BUILD)/coffer-os.elf > $(abspath $(RUNDIR))/qemu-console.log 2>&1 & qemu=$$!; \
	 trap 'kill $$qemu 2>/dev/null' EXIT INT TERM; \
	 for i in $$(seq 100); do grep -q 'provisioning public key' $(abspath $(RUNDIR))/qemu-console.log && break; sleep 0.1; done; \
	 key=$$(sed -n 's/.*provisioning public key[^:]*: *\([0-9a-f]\{64\}\).*/\1/p' $(abspath $(RUNDIR))/qemu-console.log | head -1); \
	 $(MAKE) --no-print-directory -C $(CURDIR) run-hint RUN_VAULT="the firmware in QEMU (INSECURE), console in $(RUNDIR)/qemu-console.log" RUN_KEY=$$key; \
	 $(abspath $(BIN))/cofferd -listen $(ADDR) -db sqlite:$(abspath $(RUNDIR))/cofferd.db -vault unix:$(QEMU_SOCK) -allow-insecure-vault
else
	@rm -f $(RUNDIR)/vault.sock
	@set -e; \
	 $(BIN)/softvault dev -state $(RUNDIR)/vault -listen unix:$(RUNDIR)/vault.sock > $(RUNDIR)/vault.log 2>&1 & vault=$$!; \
	 trap 'kill $$vault 2>/dev/null; wait $$vault 2>/dev/null' EXIT; trap 'exit 130' INT TERM; \
	 for i in $$(seq 300); do \
		test -S $(RUNDIR)/vault.sock && break; \
		kill -0 $$vault 2>/dev/null || { echo "softvault exited:"; cat $(RUNDIR)/vault.log; exit 1; }; \
		sleep 0.1; \
	 done; \
	 test -S $(RUNDIR)/vault.sock || { echo "softvault did not start:"; cat $(RUNDIR)/vault.log; exit 1; }; \
	 $(MAKE) --no-print-directory -C $(CURDIR) run-hint \
		RUN_VAULT="INSECURE software vault process (softvault dev) in $(RUNDIR)/vault, log in $(RUNDIR)/vault.log" \
		RUN_KEY=$$($(BIN)/coffer-provision public -key $(RUNDIR)/vault/provisioning.key); \
	 $(BIN)/cofferd -listen $(ADDR) -db $(RUN_DB) -vault unix:$(RUNDIR)/vault.sock -allow-insecure-vault
endif
endif

run-hint:
	@echo; echo "Coffer: cofferd on http://$(ADDR), vault: $(RUN_VAULT)"; \
	 echo "Try, in another terminal:"; \
	 echo "  export COFFER_CONFIG=$(abspath $(RUNDIR))/coffer.json COFFER=$(abspath $(BIN))/coffer"; \
	 echo "  \$$COFFER init --server http://$(ADDR) --token $$(cat $(RUNDIR)/demo.token) --insecure --password \\"; \
	 echo "        --provisioning-key $(RUN_KEY)"; \
	 echo "  \$$COFFER backup README.md protocol -o /tmp/demo.coffer"; \
	 echo "  \$$COFFER restore /tmp/demo.coffer -C /tmp/demo-restored"; \
	 echo "  \$$COFFER status"; echo

# The software vault alone, created and self-provisioned on first run (INSECURE).
vault:
	$(GO) run ./applet/softvault/cmd/softvault dev -state $(STATE) -listen $(LISTEN)

clean:
	rm -rf $(BUILD)
