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

.PHONY: all build test deps unit e2e vet lint fuzz fuzz-long bench install uninstall test-install packages clean

all: build

build:
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -o $(BIN) ./hook

# The whole test suite: the Debian packages its tests need, vet and lint,
# unit tests, brief fuzzing, then real libvirtd + QEMU.
test: deps vet lint unit fuzz e2e

# deps installs, with apt, the packages the tests use (the unit tests need
# acl and qemu-utils; the e2e suite libvirt, QEMU, OVMF, mmdebstrap for its
# Debian 13 root, GlusterFS and bindfs for its shared storage; the package
# tests rpm and busybox-static). Nothing happens when all are there.
TEST_DEBS := libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils \
	acl attr rpm ovmf busybox-static mmdebstrap glusterfs-server glusterfs-client bindfs
deps:
	@missing=$$(for p in $(TEST_DEBS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  command -v apt-get >/dev/null || { echo "missing packages: $$missing (and no apt-get to install them)"; exit 1; }; \
	  echo "installing with apt-get: $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

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
# It runs once per libvirt in E2E_LIBVIRT: 9 is the machine's (Debian 12),
# 11 is Debian 13's, installed once into a root directory under
# /var/cache/libvirt-dac-hook-e2e (internal/e2e/libvirt_test.go). Each
# run's log is /tmp/libvirt-dac-hook-e2e-libvirt$$V.log.
E2E_RUN ?= .
E2E_SKIP ?=
E2E_LIBVIRT ?= 9 11
e2e: build
	$(GO) vet -tags e2e ./internal/e2e/...
	@for v in $(E2E_LIBVIRT); do \
	  echo "== e2e against libvirt $$v (log /tmp/libvirt-dac-hook-e2e-libvirt$$v.log)"; \
	  LIBVIRT_DAC_HOOK_E2E_LIBVIRT=$$v $(GO) test -tags e2e -count=1 -timeout 40m -run '$(E2E_RUN)' -skip '$(E2E_SKIP)' -v ./internal/e2e/ 2>&1 | tee /tmp/libvirt-dac-hook-e2e-libvirt$$v.log | grep -E '^(e2e: |=== RUN|--- |PASS|FAIL|ok|SKIP|\s+\S+_test.go)' ; \
	  test $${PIPESTATUS[0]} -eq 0 || { echo "e2e against libvirt $$v failed"; exit 1; }; \
	done
	@echo "== e2e of shared filesystems without libvirt (log /tmp/libvirt-dac-hook-e2e-sharedfs.log)"
	@$(GO) test -tags e2e -count=1 -timeout 20m -run '$(E2E_RUN)' -skip '$(E2E_SKIP)' -v ./internal/e2e/sharedfs/ 2>&1 | tee /tmp/libvirt-dac-hook-e2e-sharedfs.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|SKIP|\s+\S+_test.go)' ; \
	  test $${PIPESTATUS[0]} -eq 0

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
# 256 disks) and of the journal's entry codec, then the whole-process run of
# the built hook against the floor program, then host scale: the storm of
# 500 concurrent prepares and releases, and one domain on a host already
# holding 0, 1,000 and 10,000 files. Prints numbers and PASS/MISS; never
# fails on a slow result.
BENCHTIME ?= 1s
BENCH_RUNS ?= 30

bench: build
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./internal/domain/ ./internal/plan/ ./internal/apply/ ./internal/journal/
	HOOK=$(CURDIR)/$(BIN) RUNS=$(BENCH_RUNS) bash internal/bench/run.sh
	HOOK=$(CURDIR)/$(BIN) RUNS=$(BENCH_RUNS) bash internal/bench/scale.sh

# `make install` puts in place everything the README uses:
#   $(SBINDIR)/libvirt-dac-hook          the binary (the command admins run)
#   $(HOOKDIR)/qemu                      a symlink to it (what libvirtd runs)
#   $(MANDIR)/man8/libvirt-dac-hook.8, man5/libvirt-dac-hook.conf.5   the man pages
#   $(SYSCONFDIR)/libvirt/libvirt-dac-hook.conf   only if absent
#   $(SYSTEMDUNITDIR)/libvirt-dac-hook-boot.service, enabled when systemd runs
#   $(SYSTEMDUNITDIR)/libvirt-dac-hook-watch.service, enabled and started then
#   $(STATEDIR)                          0700
# and records in $(STATEDIR)/installed-files what it added, for uninstall.
# A hook at $(HOOKDIR)/qemu that is not libvirt-dac-hook is never replaced.
SBINDIR   ?= $(PREFIX)/sbin
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
UNIT      := libvirt-dac-hook-boot.service
WATCHUNIT := libvirt-dac-hook-watch.service
# systemctl runs only for a real install on a host booted with systemd:
# never for a DESTDIR (a package root, a test tree), in a chroot or in a
# container without it.
SYSTEMCTL ?= $(if $(DESTDIR),,$(if $(wildcard /run/systemd/system),systemctl))

install: build
	@set -e; d="$(DESTDIR)"; hook="$$d$(HOOKDIR)/qemu"; bin="$(SBINDIR)/libvirt-dac-hook"; \
	if { [ -e "$$hook" ] || [ -L "$$hook" ]; } && ! [ "$$(readlink "$$hook" 2>/dev/null)" = "$$bin" ] && ! grep -q "$(MARKER)" "$$hook" 2>/dev/null; then \
	  echo "refusing to overwrite $$hook: it is not libvirt-dac-hook."; \
	  echo "move it to $(HOOKDIR)/qemu.d/ (libvirt >= 6.5 runs every executable there) and run make install again."; \
	  exit 1; \
	fi; \
	install -d -m 0755 "$$d$(SBINDIR)" "$$d$(HOOKDIR)" "$$d$(MANDIR)/man8" "$$d$(MANDIR)/man5" "$$d$(SYSCONFDIR)/libvirt" "$$d$(SYSTEMDUNITDIR)"; \
	install -d -m 0700 "$$d$(STATEDIR)"; \
	install -m 0755 $(BIN) "$$d$$bin.tmp" && mv -f "$$d$$bin.tmp" "$$d$$bin"; \
	ln -sfn "$$bin" "$$hook.tmp" && mv -fT "$$hook.tmp" "$$hook"; \
	install -m 0644 install/libvirt-dac-hook.8 "$$d$(MANDIR)/man8/libvirt-dac-hook.8"; \
	install -m 0644 install/libvirt-dac-hook.conf.5 "$$d$(MANDIR)/man5/libvirt-dac-hook.conf.5"; \
	for u in $(UNIT) $(WATCHUNIT); do \
	  sed -e 's|@SBINDIR@|$(SBINDIR)|g' -e 's|@STATEDIR@|$(STATEDIR)|g' install/$$u.in > "$$d$(SYSTEMDUNITDIR)/$$u"; \
	  chmod 0644 "$$d$(SYSTEMDUNITDIR)/$$u"; \
	done; \
	list="$$d$(STATEDIR)/installed-files"; \
	printf '%s\n' "$$bin" "$(HOOKDIR)/qemu" "$(MANDIR)/man8/libvirt-dac-hook.8" "$(MANDIR)/man5/libvirt-dac-hook.conf.5" "$(SYSTEMDUNITDIR)/$(UNIT)" "$(SYSTEMDUNITDIR)/$(WATCHUNIT)" > "$$list.tmp"; \
	if [ -f "$$list" ] && grep -qx "$(SYSCONFDIR)/libvirt/libvirt-dac-hook.conf" "$$list"; then echo "$(SYSCONFDIR)/libvirt/libvirt-dac-hook.conf" >> "$$list.tmp"; fi; \
	if [ ! -e "$$d$(SYSCONFDIR)/libvirt/libvirt-dac-hook.conf" ]; then \
	  install -m 0644 install/libvirt-dac-hook.conf "$$d$(SYSCONFDIR)/libvirt/libvirt-dac-hook.conf"; \
	  echo "$(SYSCONFDIR)/libvirt/libvirt-dac-hook.conf" >> "$$list.tmp"; \
	fi; \
	mv -f "$$list.tmp" "$$list"; \
	echo "installed $$d$$bin, $$hook -> $$bin, the man page, $$d$(SYSTEMDUNITDIR)/$(UNIT), $$d$(SYSTEMDUNITDIR)/$(WATCHUNIT)"; \
	if [ -n "$(SYSTEMCTL)" ]; then \
	  $(SYSTEMCTL) daemon-reload && $(SYSTEMCTL) enable $(UNIT) && echo "enabled $(UNIT): it gives back stale records at boot, before libvirtd"; \
	  $(SYSTEMCTL) enable $(WATCHUNIT) && $(SYSTEMCTL) restart $(WATCHUNIT) && echo "enabled and started $(WATCHUNIT): the watcher of cooperative mode, started with libvirtd and virtqemud"; \
	else \
	  echo "systemd is not running here (or DESTDIR is set): enable the boot unit on the target with 'systemctl enable $(UNIT) $(WATCHUNIT)'"; \
	  echo "  (without systemd, start '$(SBINDIR)/libvirt-dac-hook watch' beside libvirtd: cooperative mode needs it running)"; \
	fi; \
	echo "next:"; \
	echo "  1. cooperative mode is recommended: 'dynamic_ownership = 1' in $(SYSCONFDIR)/libvirt/qemu.conf (libvirt's default;"; \
	echo "     remember_owner may be 1 or 0). libvirt labels files during the run, so hot-plug, media change,"; \
	echo "     snapshots and block jobs work; the hook records the real owners and puts them back at release."; \
	echo "     Strict mode (dynamic_ownership = 0) leaves owners to the hook alone; hot-plug then needs 'libvirt-dac-hook grant'."; \
	echo "  2. restart libvirtd (or virtqemud): it finds hooks, and reads qemu.conf, only when it starts. Running VMs survive."; \
	echo "  3. check the setup: libvirt-dac-hook doctor"

# `make uninstall` removes what install recorded in installed-files: the
# hook only while it is still ours, the config only while it is unchanged
# (an edited one is kept, and said so), the state directory only when it
# holds no record of a file given to QEMU.
uninstall:
	@set -e; d="$(DESTDIR)"; bin="$(SBINDIR)/libvirt-dac-hook"; list="$$d$(STATEDIR)/installed-files"; \
	if [ ! -f "$$list" ]; then \
	  echo "$$list is missing (an install by an older Makefile?): removing the files make install puts in place, not the config"; \
	  install -d -m 0700 "$$d$(STATEDIR)"; \
	  printf '%s\n' "$$bin" "$(HOOKDIR)/qemu" "$(MANDIR)/man8/libvirt-dac-hook.8" "$(MANDIR)/man5/libvirt-dac-hook.conf.5" "$(SYSTEMDUNITDIR)/$(UNIT)" "$(SYSTEMDUNITDIR)/$(WATCHUNIT)" > "$$list"; \
	fi; \
	if [ -n "$(SYSTEMCTL)" ] && grep -qx "$(SYSTEMDUNITDIR)/$(UNIT)" "$$list"; then $(SYSTEMCTL) disable $(UNIT) || true; fi; \
	if [ -n "$(SYSTEMCTL)" ] && grep -qx "$(SYSTEMDUNITDIR)/$(WATCHUNIT)" "$$list"; then $(SYSTEMCTL) disable --now $(WATCHUNIT) || true; fi; \
	while IFS= read -r f; do \
	  p="$$d$$f"; \
	  case "$$f" in \
	  "$(HOOKDIR)/qemu") \
	    if [ "$$(readlink "$$p" 2>/dev/null)" = "$$bin" ] || grep -q "$(MARKER)" "$$p" 2>/dev/null; then rm -f "$$p"; echo "removed $$p; restart libvirtd"; \
	    elif [ -e "$$p" ] || [ -L "$$p" ]; then echo "left $$p: it is not libvirt-dac-hook any more"; fi ;; \
	  "$(SYSCONFDIR)/libvirt/libvirt-dac-hook.conf") \
	    if cmp -s "$$p" install/libvirt-dac-hook.conf; then rm -f "$$p"; echo "removed $$p"; \
	    elif [ -e "$$p" ]; then echo "kept $$p: it was changed since install"; fi ;; \
	  *) if [ -e "$$p" ] || [ -L "$$p" ]; then rm -f "$$p"; echo "removed $$p"; fi ;; \
	  esac; \
	done < "$$list"; \
	rm -f "$$list"; \
	if [ -n "$(SYSTEMCTL)" ]; then $(SYSTEMCTL) daemon-reload || true; fi; \
	s="$$d$(STATEDIR)"; \
	records=; \
	if [ -f "$$s/state.json" ] && grep -q '"path"' "$$s/state.json"; then records=1; fi; \
	if [ -f "$$s/state.db" ]; then \
	  if [ -x $(BIN) ]; then $(BIN) status --json --state-file "$$s/state.db" 2>/dev/null | grep -q '"path"' && records=1; \
	  else records=1; fi; \
	fi; \
	if ls "$$s"/inventory/*.rec "$$s"/inventory/*.json 2>/dev/null | grep -vq '/labelled.json$$'; then records=1; fi; \
	if [ -n "$$records" ]; then \
	  echo "kept $$s: it holds records of original file owners ('libvirt-dac-hook status' lists them)"; \
	else \
	  rm -f "$$s/lock" "$$s/state.json" "$$s/state.db" "$$s/state.json.migrated" "$$s/watch.lock" "$$s/watch.sock" "$$s/watch.spawn" "$$s/host-id"; \
	  rm -rf "$$s/inventory"; \
	  rmdir "$$s" 2>/dev/null && echo "removed $$s" || echo "kept $$s: it is not empty"; \
	fi

# Installs into a scratch DESTDIR and uninstalls again (no root needed).
test-install: build
	bash install/test-install.sh

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
	gzip -9n < install/libvirt-dac-hook.conf.5 > dist/stage/libvirt-dac-hook.conf.5.gz
	cp $(BIN) dist/stage/libvirt-dac-hook
	cp $(README) dist/stage/README.md
	cp $(CONF) dist/stage/libvirt-dac-hook.conf
	for u in $(UNIT) $(WATCHUNIT); do sed -e 's|@SBINDIR@|/usr/sbin|g' -e 's|@STATEDIR@|/var/lib/libvirt-dac-hook|g' install/$$u.in > dist/stage/$$u; done
	@for s in preinstall postinstall postremove preremove; do \
	  { printf '#!/bin/sh\nPHASE=%s\n' $$s; cat install/scripts/maintainer.sh; } > dist/stage/scripts/$$s; \
	done
	rm -f $(DEB) $(RPM)
	PKG_VERSION='$(PKG_VERSION)' SOURCE_DATE_EPOCH='$(SOURCE_DATE_EPOCH)' $(NFPM) pkg -f install/nfpm.yaml -p deb -t $(DEB)
	PKG_VERSION='$(PKG_VERSION)' SOURCE_DATE_EPOCH='$(SOURCE_DATE_EPOCH)' $(NFPM) pkg -f install/nfpm.yaml -p rpm -t $(RPM)
	@ls -l $(DEB) $(RPM)

# Installs, upgrades and removes the .deb on this machine (root), installs,
# upgrades and erases the .rpm in a scratch root with its own database, and
# puts /etc/libvirt/hooks back as it was.
test-packages:
	bash install/test-packages.sh
