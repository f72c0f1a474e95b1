# libvirt-dac-hook — build, test, install, package.
SHELL     := /bin/bash
# sudo resets PATH (secure_path), which rarely holds Go: fall back to the
# official install location so `sudo make install` / `sudo make test` work.
GO        ?= $(or $(shell command -v go 2>/dev/null),$(wildcard /usr/local/go/bin/go),go)
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
DESTDIR   ?=
PREFIX    ?= /usr
SYSCONFDIR ?= /etc
HOOKDIR   ?= $(SYSCONFDIR)/libvirt/hooks
STATEDIR  ?= /var/lib/libvirt-dac-hook
MANDIR    ?= $(PREFIX)/share/man
PKG       := github.com/libvirt-dac-hook/libvirt-dac-hook
BIN       := bin/libvirt-dac-hook
LDFLAGS   := -s -w -X $(PKG)/internal/version.Version=$(VERSION)
GOFLAGS_BUILD := -trimpath -ldflags "$(LDFLAGS)"
FUZZTIME  ?= 5s
MARKER    := libvirt-dac-hook-binary-marker-v1

.PHONY: all build test unit e2e vet lint fuzz fuzz-long bench install uninstall packages clean

all: build

build:
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -o $(BIN) ./hook

# The whole test suite: vet and lint, unit tests, brief fuzzing, then real
# libvirtd + QEMU.
test: vet lint unit fuzz e2e

vet:
	$(GO) vet ./...

# golangci-lint is pinned and run through the module proxy, so go.mod is
# untouched; .golangci.yml says what runs and why each exclusion exists.
GOLANGCI_LINT_VERSION ?= v2.15.0
GOLANGCI_LINT ?= $(GO) run github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)

lint:
	$(GOLANGCI_LINT) run ./...

unit:
	$(GO) test -count=1 ./internal/...

# The real-libvirt suite lives behind the e2e build tag (internal/e2e), so
# `go test ./...` never runs it; vet it here with the tag, since `make vet`
# cannot see it. Narrow it with E2E_RUN and E2E_SKIP (go test -run and
# -skip patterns), e.g. E2E_SKIP=TestLive leaves out the live operations.
E2E_RUN ?= .
E2E_SKIP ?=
e2e: build
	$(GO) vet -tags e2e ./internal/e2e/
	$(GO) test -tags e2e -count=1 -timeout 40m -run '$(E2E_RUN)' -skip '$(E2E_SKIP)' -v ./internal/e2e/ 2>&1 | tee /tmp/libvirt-dac-hook-e2e.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|SKIP|\s+\S+_test.go)' ; test $${PIPESTATUS[0]} -eq 0

# Each fuzz target runs for $(FUZZTIME); `make fuzz-long` runs them longer.
# A run that ends in the fuzz engine's own "context deadline exceeded" (a
# worker busy when -fuzztime runs out, golang/go#56238) found nothing and
# is retried once; a real failure saves its input under testdata/fuzz.
FUZZRUN = $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 100x -parallel 2 $$pkg > /tmp/libvirt-dac-hook-fuzz.log 2>&1

fuzz:
	@set -e; for pkg in $$($(GO) list ./internal/...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$f ($(FUZZTIME))"; \
	    if ! $(FUZZRUN) && ! { grep -q 'context deadline exceeded' /tmp/libvirt-dac-hook-fuzz.log && ! grep -q 'Failing input written' /tmp/libvirt-dac-hook-fuzz.log && echo "  engine deadline flake, retrying" && $(FUZZRUN); }; then \
	      grep -v '^fuzz: elapsed' /tmp/libvirt-dac-hook-fuzz.log | tail -30; echo "fuzz $$f failed (new crashers are saved under testdata/fuzz/$$f)"; exit 1; \
	    fi; \
	  done; \
	done

fuzz-long:
	$(MAKE) fuzz FUZZTIME=2m

# Benchmarks, as root: Go benchmarks of parsing, planning, prepare
# and release on generated domains (1 disk; 16 disks x 4-deep qcow2 chains;
# 256 disks), then the whole-process run of the built hook against the floor
# program. Prints numbers and PASS/MISS; never fails on a slow result.
BENCHTIME ?= 1s
BENCH_RUNS ?= 30

bench: build
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./internal/domain/ ./internal/plan/ ./internal/apply/
	HOOK=$(CURDIR)/$(BIN) RUNS=$(BENCH_RUNS) bash internal/bench/run.sh

install: build
	@dst="$(DESTDIR)$(HOOKDIR)/qemu"; \
	if [ -e "$$dst" ] && ! grep -q "$(MARKER)" "$$dst" 2>/dev/null; then \
	  echo "refusing to overwrite $$dst: it is not libvirt-dac-hook."; \
	  echo "move it to $(HOOKDIR)/qemu.d/ (libvirt >= 6.5 runs every executable there) and run make install again."; \
	  exit 1; \
	fi; \
	install -d -m 0755 "$(DESTDIR)$(HOOKDIR)" "$(DESTDIR)$(MANDIR)/man8"; \
	install -d -m 0700 "$(DESTDIR)$(STATEDIR)"; \
	install -m 0755 $(BIN) "$$dst.tmp" && mv -f "$$dst.tmp" "$$dst"; \
	if [ ! -e "$(DESTDIR)$(SYSCONFDIR)/libvirt/libvirt-dac-hook.conf" ]; then \
	  install -m 0644 install/libvirt-dac-hook.conf "$(DESTDIR)$(SYSCONFDIR)/libvirt/libvirt-dac-hook.conf"; fi; \
	if [ -f install/libvirt-dac-hook.8 ]; then install -m 0644 install/libvirt-dac-hook.8 "$(DESTDIR)$(MANDIR)/man8/"; fi; \
	echo "installed $$dst"; \
	echo "next: set 'dynamic_ownership = 0' in /etc/libvirt/qemu.conf, then restart libvirtd (running VMs survive): libvirtd only finds hooks when it starts."

uninstall:
	@dst="$(DESTDIR)$(HOOKDIR)/qemu"; \
	if [ -e "$$dst" ] && grep -q "$(MARKER)" "$$dst"; then rm -f "$$dst"; echo "removed $$dst; restart libvirtd"; fi

clean:
	rm -rf bin dist

# --- packages: .deb and .rpm with nfpm ----------------------------------------
# nfpm is pinned and run through the module proxy, so go.mod is untouched.
# PKG_VERSION: install/pkgversion.sh turns `git describe` into a version valid
# for dpkg and rpm. SOURCE_DATE_EPOCH (last commit time) fixes every mtime in
# both packages, so the same commit builds the same bytes.
NFPM_VERSION ?= v2.45.2
NFPM         ?= $(GO) run github.com/goreleaser/nfpm/v2/cmd/nfpm@$(NFPM_VERSION)
PKG_VERSION  ?= $(shell sh install/pkgversion.sh)
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
DIST         ?= dist
README       ?= README.md
CONF         ?= install/libvirt-dac-hook.conf
DEB          = $(DIST)/libvirt-dac-hook_$(PKG_VERSION)_amd64.deb
RPM          = $(DIST)/libvirt-dac-hook-$(PKG_VERSION).x86_64.rpm

.PHONY: packages test-packages

packages: build
	@test -f $(README) || { echo "$(README) is missing: it goes into the packages"; exit 1; }
	@test -f $(CONF) || { echo "$(CONF) is missing: it goes into the packages"; exit 1; }
	rm -rf dist/stage && mkdir -p dist/stage/scripts $(DIST)
	gzip -9n < install/libvirt-dac-hook.8 > dist/stage/libvirt-dac-hook.8.gz
	cp $(BIN) dist/stage/libvirt-dac-hook
	cp $(README) dist/stage/README.md
	cp $(CONF) dist/stage/libvirt-dac-hook.conf
	@for s in preinstall postinstall postremove preremove; do \
	  { printf '#!/bin/sh\nPHASE=%s\n' $$s; cat install/scripts/maintainer.sh; } > dist/stage/scripts/$$s; \
	done
	rm -f $(DEB) $(RPM)
	PKG_VERSION='$(PKG_VERSION)' SOURCE_DATE_EPOCH='$(SOURCE_DATE_EPOCH)' $(NFPM) pkg -f install/nfpm.yaml -p deb -t $(DEB)
	PKG_VERSION='$(PKG_VERSION)' SOURCE_DATE_EPOCH='$(SOURCE_DATE_EPOCH)' $(NFPM) pkg -f install/nfpm.yaml -p rpm -t $(RPM)
	@ls -l $(DEB) $(RPM)

# Installs, upgrades and removes the .deb on this machine (root), checks the
# .rpm's metadata and scripts, and puts /etc/libvirt/hooks back as it was.
test-packages:
	bash install/test-packages.sh
