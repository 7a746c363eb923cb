# Coffer firmware: the Trusted Applet (applet/ta) and the Trusted OS
# (firmware/os) built with the TamaGo toolchain for GoTEE. Included by the
# root Makefile; also usable alone: make -f firmware/firmware.mk TARGET.
# See firmware/README-firmware.md.
#
#   make firmware [BOARD=qemu|usbarmory]   applet ELF, then the OS ELF embedding it
#   make qemu                              boot the QEMU firmware (console here,
#                                          protocol UART on a unix socket)
#   make qemu BOOT=1                       the same through the bootloader, with
#                                          a proof signed by the TEST keys
#   make imx BOARD=usbarmory [OS_PROOF=F]  the bootloader's .imx, the one image
#                                          HAB signs (mkimage, u-boot-tools),
#                                          and with the OS's proof bundle F
#                                          the eMMC boot area holding the OS
#   make reproduce                         build the committed HEAD twice in two
#                                          fresh clones and compare every image
#   make test-firmware                     BOARD=usbarmory must build and be
#                                          reproducible, then the QEMU
#                                          integration tests (skip cleanly
#                                          without QEMU or the toolchain)
#   TAMAGO=DIR|GO                          another toolchain (see below)

# Do not take over the including Makefile's default goal.
FW_SAVED_GOAL := $(.DEFAULT_GOAL)

FW_COMMA := ,
FW_DIR  := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
FW_ROOT := $(patsubst %/,%,$(dir $(FW_DIR)))

BOARD ?= qemu
FW_GO ?= go

# The TamaGo toolchain. TAMAGO is a tamago-go folder (its bin/go is run with
# GOROOT and PATH set, as upstream's tamago tool runs it) or any go command
# for GOOS=tamago, such as that tool; set it to use your own, as is. By
# default it is the folder where the tool (the tool directive in go.mod)
# installs tamago-go under the user cache folder, which fwimage asks Go for
# (os.UserCacheDir) instead of make guessing it. We do not run the tool
# itself: when tamago-go is missing it would clone and build it for half an
# hour, and we would rather say so. Computed once, on first use.
FW_TAMAGO_VERSION = $(shell cd $(FW_ROOT) && $(FW_GO) list -m -f '{{.Version}}' github.com/usbarmory/tamago 2>/dev/null)
ifeq ($(origin TAMAGO),undefined)
TAMAGO = $(eval TAMAGO := $$(shell cd $(FW_ROOT) && $(FW_GO) run ./firmware/cmd/fwimage toolchain-path $$(FW_TAMAGO_VERSION) 2>/dev/null))$(TAMAGO)
endif
FW_TAMAGO_RUN = $(if $(and $(TAMAGO),$(wildcard $(TAMAGO)/bin/go)),GOROOT=$(TAMAGO) PATH=$(TAMAGO)/bin:$$PATH $(TAMAGO)/bin/go,$(TAMAGO))
# A shell test for "TAMAGO can build", and what to say when it cannot.
FW_TAMAGO_OK = { [ -n "$(TAMAGO)" ] && { [ -x "$(TAMAGO)/bin/go" ] || { [ -f "$(TAMAGO)" ] && [ -x "$(TAMAGO)" ]; }; }; }
FW_TAMAGO_MISSING = $(if $(TAMAGO),no TamaGo toolchain at $(TAMAGO),no TamaGo toolchain: TAMAGO is empty (by default go run ./firmware/cmd/fwimage toolchain-path names it))

# Link addresses: board/layout.go (OSText, AppletText); a test checks they agree.
OS_TEXT     := 0x80010000
APPLET_TEXT := 0x98010000

FW_BUILD   ?= $(FW_ROOT)/build/firmware/$(BOARD)
# The version stamped into the OS (-X main.Version). It is part of the image,
# so it must be the same in every clone of a commit: a fixed abbreviation
# length (git's default grows with the number of objects, which differs
# between clones), and "-dirty" only for uncommitted changes to tracked files.
FW_VERSION ?= $(shell cd $(FW_ROOT) && git describe --always --dirty --abbrev=12 2>/dev/null || echo dev)
# Everything that can change the images is set here, not taken from the
# environment: GOFLAGS too (non-empty, so that neither the environment's nor
# `go env -w`'s GOFLAGS, e.g. -gcflags or -race, reaches the build), and
# GOTOOLCHAIN=local so that go.mod's go line never swaps tamago-go for a
# downloaded stock Go. -trimpath drops the clone's, GOROOT's and the module
# cache's paths; -buildvcs=false the VCS stamp (the commit is in Version).
FW_GOFLAGS := -trimpath -buildvcs=false
FW_GOENV   := GOOS=tamago GOARCH=arm GOARM=7 GOOSPKG=github.com/usbarmory/tamago CGO_ENABLED=0 GO_EXTLINK_ENABLED=0 \
	GOTOOLCHAIN=local GOFLAGS="$(FW_GOFLAGS)"
# mkimage stamps nothing in an imximage today; should it ever, it takes the
# time from SOURCE_DATE_EPOCH, which is the commit's.
FW_SOURCE_DATE_EPOCH ?= $(shell cd $(FW_ROOT) && git log -1 --format=%ct 2>/dev/null || echo 0)

# The images of a release, relative to FW_BUILD. Each target prints the
# SHA-256 of what it built, $(call fw-sums,...), kept in FW_BUILD/SHA256SUMS:
# `make firmware` FW_IMAGES, `make imx` FW_IMX_IMAGES too. `make reproduce`
# runs FW_REPRO_TARGETS (and FW_REPRO_IMX_TARGETS when mkimage is there) in
# two fresh clones and compares every file of FW_IMAGES (and FW_IMX_IMAGES).
# Another image joins by appending its files to FW_IMAGES or FW_IMX_IMAGES
# and its target to FW_REPRO_TARGETS or FW_REPRO_IMX_TARGETS. The eMMC boot
# area is not among them: it holds the OS's proof bundle, which changes with
# every checkpoint, and is made of images already compared.
FW_IMAGES            := applet.elf coffer-os.elf coffer-boot.elf
FW_IMX_IMAGES        := coffer-boot.imx
FW_REPRO_TARGETS     := firmware
FW_REPRO_IMX_TARGETS := imx
REPRO_BOARD          ?= usbarmory

# $(call fw-sums,FILES): print the SHA-256 of FILES (relative to FW_BUILD)
# and put them in FW_BUILD/SHA256SUMS, replacing those files' old lines and
# keeping the lines of images other targets built there.
fw-sums = cd $(FW_BUILD) && sha256sum $(1) > SHA256SUMS.new && cat SHA256SUMS.new && \
	{ if [ -f SHA256SUMS ]; then awk 'NR == FNR { new[$$2] = 1; next } !($$2 in new)' SHA256SUMS.new SHA256SUMS; fi; \
	  cat SHA256SUMS.new; } | sort -k 2 > SHA256SUMS.tmp && mv SHA256SUMS.tmp SHA256SUMS && rm SHA256SUMS.new
# Extra build tags for both images (test-firmware adds coffer_crashtest).
FW_TAGS    ?=

QEMU       ?= qemu-system-arm
QEMU_STATE ?= $(FW_BUILD)/qemu-state
QEMU_SOCK  ?= $(QEMU_STATE)/protocol.sock
QEMU_ARGS   = -machine mcimx6ul-evk -cpu cortex-a7 -m 512M -nographic -monitor none \
	-serial unix:$(QEMU_SOCK),server,nowait -serial stdio -net none \
	-semihosting -semihosting-config enable=on,userspace=off

MKIMAGE ?= mkimage

.PHONY: firmware qemu imx reproduce test-firmware fw-toolchain fw-clean

fw-toolchain:
	@if ! $(FW_TAMAGO_OK); then \
		echo "firmware: $(FW_TAMAGO_MISSING)"; \
		echo "firmware: install tamago-go for github.com/usbarmory/tamago $(FW_TAMAGO_VERSION) or set TAMAGO, see firmware/README-firmware.md"; \
		exit 1; \
	fi

firmware: fw-toolchain
	@mkdir -p $(FW_BUILD)
	cd $(FW_ROOT) && $(FW_GOENV) $(FW_TAMAGO_RUN) build $(FW_GOFLAGS) -tags board_$(BOARD)$(if $(FW_TAGS),$(FW_COMMA)$(FW_TAGS)) \
		-ldflags "-s -w -T $(APPLET_TEXT) -R 0x1000" -o $(FW_BUILD)/applet.elf ./applet/ta
	cp $(FW_BUILD)/applet.elf $(FW_DIR)/os/applet.elf
	cd $(FW_ROOT) && $(FW_GOENV) $(FW_TAMAGO_RUN) build $(FW_GOFLAGS) -tags board_$(BOARD),linkramsize$(if $(FW_TAGS),$(FW_COMMA)$(FW_TAGS)) \
		-ldflags "-T $(OS_TEXT) -R 0x1000 -X main.Version=$(FW_VERSION)" -o $(FW_BUILD)/coffer-os.elf ./firmware/os
	@$(call fw-sums,$(FW_IMAGES))

# The bootloader (firmware/boot), built with `make firmware` before the
# applet and the OS: build/firmware/$(BOARD)/coffer-boot.elf, linked in its
# own region (board/layout.go BootText), with the release log policy
# BOOT_POLICY compiled in (copied to firmware/boot/policy.txt, ignored by
# git). The default is the QEMU tests' TEST policy, whose private keys are
# committed: a bootloader built with it checks nothing, says so at boot,
# and on a device whose secure boot is closed refuses to boot anything
# (bootcheck.CheckPolicy). For BOARD=usbarmory the build refuses a TEST
# policy (one whose origin, log or witness line names TEST-ONLY, as
# bootcheck.IsTestPolicy decides) unless DEV=1 says it is a development
# image. A release passes its own log's policy: make firmware
# BOOT_POLICY=FILE. The policy's bytes are in coffer-boot.elf and .imx, so
# the file is an input of the build: whoever rebuilds a release needs the
# same file (make reproduce and scripts/rebuild-release.sh take BOOT_POLICY
# too).
BOOT_TEXT   := 0x91010000
BOOT_POLICY ?= $(FW_DIR)/qemutest/testdata/boot-policy-TEST-ONLY.txt
DEV         ?=
FW_POLICY_IS_TEST = $(shell grep -Eq '^[[:space:]]*(origin|log|witness)[[:space:]].*TEST-ONLY' '$(BOOT_POLICY)' 2>/dev/null && echo yes)
FW_TEST_POLICY_REFUSED = fw-bootloader: BOOT_POLICY $(BOOT_POLICY) is a TEST policy (its private keys are committed): \
	a USB armory bootloader built with it boots any OS anyone signs. Pass your release log's policy \
	(BOOT_POLICY=FILE, see firmware/README-firmware.md), or DEV=1 for a development image that must never be HAB-signed

.PHONY: fw-bootloader
firmware: fw-bootloader
fw-bootloader: fw-toolchain
	$(if $(and $(filter usbarmory,$(BOARD)),$(FW_POLICY_IS_TEST),$(if $(filter 1,$(DEV)),,refuse)),$(error $(FW_TEST_POLICY_REFUSED)))
	$(if $(and $(filter usbarmory,$(BOARD)),$(FW_POLICY_IS_TEST)),@echo "fw-bootloader: WARNING: DEV=1: coffer-boot.elf embeds the TEST policy $(BOOT_POLICY); never HAB-sign it")
	@mkdir -p $(FW_BUILD)
	cp $(BOOT_POLICY) $(FW_DIR)/boot/policy.txt
	cd $(FW_ROOT) && $(FW_GOENV) $(FW_TAMAGO_RUN) build $(FW_GOFLAGS) -tags board_$(BOARD),linkramsize,linkramstart \
		-ldflags "-T $(BOOT_TEXT) -R 0x1000 -X main.Version=$(FW_VERSION)" -o $(FW_BUILD)/coffer-boot.elf ./firmware/boot

qemu:
	@if [ "$(BOARD)" != qemu ]; then echo "qemu: needs BOARD=qemu"; exit 1; fi
	@$(MAKE) --no-print-directory -f $(FW_DIR)/firmware.mk firmware BOARD=qemu
	@mkdir -p $(QEMU_STATE) && rm -f $(QEMU_SOCK)
	@echo "qemu: protocol UART on unix socket $(QEMU_SOCK)"
	@echo "qemu: store and anchor files in $(QEMU_STATE); console below, quit with Ctrl-A X"
	$(if $(BOOT),cp $(FW_BUILD)/coffer-os.elf $(QEMU_STATE)/coffer-os.elf && cd $(FW_ROOT) && $(FW_GO) run ./firmware/cmd/fwimage dev-proof $(FW_DIR)/qemutest/testdata qemu $(FW_BUILD)/coffer-os.elf $(QEMU_STATE)/coffer-os.proof)
	cd $(QEMU_STATE) && $(QEMU) $(QEMU_ARGS) -kernel $(FW_BUILD)/$(if $(BOOT),coffer-boot.elf,coffer-os.elf)

# HAB signs only the bootloader: coffer-boot.imx is coffer-boot.elf's flat
# image behind an IVT, boot data and tamago's Mk II DCD (plus the TZASC
# line), with the room for a CSF that habtool fills. The OS is not in it:
# the bootloader reads the OS and its proof bundle from the eMMC boot area
# (board/usbarmory/bootarea.go), which OS_PROOF=FILE (the bundle
# `coffer-release proof` writes for coffer-os.elf) lays out here.
OS_PROOF ?=

imx:
	@if [ "$(BOARD)" != usbarmory ]; then echo "imx: a flashable image is for hardware: make imx BOARD=usbarmory"; exit 1; fi
	@command -v $(MKIMAGE) >/dev/null 2>&1 || { echo "imx: mkimage not found (apt-get install u-boot-tools)"; exit 1; }
	@$(MAKE) --no-print-directory -f $(FW_DIR)/firmware.mk firmware BOARD=usbarmory
	cd $(FW_ROOT) && $(FW_GO) run ./firmware/cmd/fwimage bin $(FW_BUILD)/coffer-boot.elf $(FW_BUILD)/coffer-boot.bin
	cd $(FW_ROOT) && $(FW_GO) mod download github.com/usbarmory/tamago
	cp -f "$$(cd $(FW_ROOT) && $(FW_GO) list -m -f '{{.Dir}}' github.com/usbarmory/tamago)/board/usbarmory/mk2/imximage.cfg" $(FW_BUILD)/coffer-boot.dcd
	chmod 644 $(FW_BUILD)/coffer-boot.dcd
	@# GoTEE: keep TrustZone memory protection (disable the TZASC bypass) from DDR init on.
	echo "DATA 4 0x020e4024 0x00000001  # TZASC_BYPASS" >> $(FW_BUILD)/coffer-boot.dcd
	SOURCE_DATE_EPOCH=$(FW_SOURCE_DATE_EPOCH) $(MKIMAGE) -n $(FW_BUILD)/coffer-boot.dcd -T imximage -e $(BOOT_TEXT) -d $(FW_BUILD)/coffer-boot.bin $(FW_BUILD)/coffer-boot.imx
	cd $(FW_ROOT) && $(FW_GO) run ./firmware/cmd/fwimage patch-entry $(FW_BUILD)/coffer-boot.elf $(FW_BUILD)/coffer-boot.imx
	@# The layout HAB signing needs (IVT, boot data, DCD, CSF pointer and room), and the payload is the ELF.
	cd $(FW_ROOT) && $(FW_GO) run ./firmware/cmd/fwimage check-imx $(FW_BUILD)/coffer-boot.imx $(FW_BUILD)/coffer-boot.elf
	@# On the boot medium the image and its CSF go from byte 1024 up; the OS's boot area starts at 64 MiB.
	@size=$$(stat -c %s $(FW_BUILD)/coffer-boot.imx); if [ $$((1024 + size + 0x4000)) -gt $$((131072 * 512)) ]; then \
		echo "imx: coffer-boot.imx ($$size bytes) and its CSF would run into the eMMC boot area at sector 131072"; exit 1; fi
	@echo "imx: $(FW_BUILD)/coffer-boot.imx (the bootloader, unsigned; to sign it for HAB see firmware/README-firmware.md)"
	@$(call fw-sums,$(FW_IMAGES) $(FW_IMX_IMAGES))
ifneq ($(strip $(OS_PROOF)),)
	cd $(FW_ROOT) && $(FW_GO) run ./firmware/cmd/fwimage boot-area $(FW_BUILD)/coffer-os.elf $(abspath $(OS_PROOF)) $(FW_BUILD)/coffer-os-boot-area.img
	@echo "imx: $(FW_BUILD)/coffer-os-boot-area.img (coffer-os.elf and its proof; write it at eMMC sector 131072)"
else
	@echo "imx: no eMMC boot area for the OS: it needs the OS's proof bundle from coffer-release proof (make imx BOARD=usbarmory OS_PROOF=FILE)"
endif

# Build the committed HEAD twice, in two fresh clones, by two users where we
# can (root runs the second build as nobody), with two Go build caches, two
# module caches and two toolchain paths, and compare every image byte for
# byte: scripts/reproduce.sh says what differs and exits non-zero if any
# image does. Without mkimage the .imx images are left out, and it says so.
# Both builds embed the same BOOT_POLICY file (a copy of it; by default the
# TEST policy, which for the default REPRO_BOARD=usbarmory needs DEV=1):
# make reproduce BOOT_POLICY=FILE for a release's.
reproduce: fw-toolchain
	@FW_GO="$(FW_GO)" TAMAGO="$(TAMAGO)" MKIMAGE="$(MKIMAGE)" BOARD="$(REPRO_BOARD)" BOOT_POLICY="$(abspath $(BOOT_POLICY))" DEV="$(DEV)" \
		IMAGES="$(FW_IMAGES)" IMX_IMAGES="$(FW_IMX_IMAGES)" \
		TARGETS="$(FW_REPRO_TARGETS)" IMX_TARGETS="$(FW_REPRO_IMX_TARGETS)" \
		$(FW_ROOT)/scripts/reproduce.sh $(FW_ROOT)

# QEMU integration tests, on an image built with the coffer_crashtest tag (the
# applet panics on one magic request, to test the OS restarting it) in its own
# folder. First the USB armory firmware is built, in its own folder too, so
# that the hardware code, which no other test compiles, fails the run when it
# does not build; with mkimage its .imx too, which check-imx holds to the
# layout HAB signing needs; then `make reproduce` (REPRODUCE=0 skips it, and
# says so). Without QEMU or the toolchain: one line, exit 0.
REPRODUCE ?= 1
FW_TEST_BUILD  := $(FW_ROOT)/build/firmware/qemu-test
FW_CHECK_BUILD := $(FW_ROOT)/build/firmware/usbarmory-check

test-firmware:
	@if ! command -v $(QEMU) >/dev/null 2>&1; then \
		echo "test-firmware: SKIPPED: $(QEMU) not found (apt-get install qemu-system-arm)"; exit 0; \
	fi; \
	if ! $(FW_TAMAGO_OK); then \
		echo "test-firmware: SKIPPED: $(FW_TAMAGO_MISSING) (see firmware/README-firmware.md)"; exit 0; \
	fi; \
	$(MAKE) --no-print-directory -f $(FW_DIR)/firmware.mk firmware TAMAGO=$(TAMAGO) BOARD=usbarmory FW_BUILD=$(FW_CHECK_BUILD) FW_TAGS= DEV=1 && \
	if command -v $(MKIMAGE) >/dev/null 2>&1; then \
		$(MAKE) --no-print-directory -f $(FW_DIR)/firmware.mk imx TAMAGO=$(TAMAGO) BOARD=usbarmory FW_BUILD=$(FW_CHECK_BUILD) FW_TAGS= DEV=1; \
	else echo "test-firmware: .imx layout not checked: $(MKIMAGE) not found (apt-get install u-boot-tools)"; fi && \
	if [ "$(REPRODUCE)" = 1 ]; then \
		$(MAKE) --no-print-directory -f $(FW_DIR)/firmware.mk reproduce TAMAGO=$(TAMAGO) DEV=1; \
	else echo "test-firmware: reproduce SKIPPED (REPRODUCE=$(REPRODUCE))"; fi && \
	$(MAKE) --no-print-directory -f $(FW_DIR)/firmware.mk firmware TAMAGO=$(TAMAGO) BOARD=qemu FW_BUILD=$(FW_TEST_BUILD) FW_TAGS=coffer_crashtest && \
	cd $(FW_ROOT) && COFFER_FIRMWARE=$(FW_TEST_BUILD)/coffer-os.elf COFFER_QEMU=$(QEMU) \
		COFFER_BOOTLOADER=$(FW_TEST_BUILD)/coffer-boot.elf \
		$(FW_GO) test -count=1 -timeout 30m -v ./firmware/qemutest && \
	COFFER_FIRMWARE=$(FW_TEST_BUILD)/coffer-os.elf COFFER_QEMU=$(QEMU) \
		$(FW_GO) test -count=1 -timeout 10m -v -run 'TestE2EQEMUVault' ./client/cmd/coffer

fw-clean:
	rm -rf $(FW_ROOT)/build/firmware $(FW_DIR)/os/applet.elf

.DEFAULT_GOAL := $(FW_SAVED_GOAL)
