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
#   make imx BOARD=usbarmory               flashable .imx (mkimage, u-boot-tools)
#   make test-firmware                     BOARD=usbarmory must build, then the
#                                          QEMU integration tests (skip cleanly
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
FW_VERSION ?= $(shell cd $(FW_ROOT) && git describe --always --dirty 2>/dev/null || echo dev)
FW_GOENV   := GOOS=tamago GOARCH=arm GOARM=7 GOOSPKG=github.com/usbarmory/tamago CGO_ENABLED=0 GO_EXTLINK_ENABLED=0
FW_GOFLAGS := -trimpath -buildvcs=false
# Extra build tags for both images (test-firmware adds coffer_crashtest).
FW_TAGS    ?=

QEMU       ?= qemu-system-arm
QEMU_STATE ?= $(FW_BUILD)/qemu-state
QEMU_SOCK  ?= $(QEMU_STATE)/protocol.sock
QEMU_ARGS   = -machine mcimx6ul-evk -cpu cortex-a7 -m 512M -nographic -monitor none \
	-serial unix:$(QEMU_SOCK),server,nowait -serial stdio -net none \
	-semihosting -semihosting-config enable=on,userspace=off

MKIMAGE ?= mkimage

.PHONY: firmware qemu imx test-firmware fw-toolchain fw-clean

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
	@ls -l $(FW_BUILD)/applet.elf $(FW_BUILD)/coffer-os.elf

# The bootloader (firmware/boot), built with `make firmware` before the
# applet and the OS: build/firmware/$(BOARD)/coffer-boot.elf, linked in its
# own region (board/layout.go BootText), with the release log policy
# BOOT_POLICY compiled in (copied to firmware/boot/policy.txt, ignored by
# git). The default is the QEMU tests' TEST policy, whose private keys are
# committed: a bootloader built with it checks nothing, and says so at boot.
# A release passes its own log's policy: make firmware BOOT_POLICY=FILE.
BOOT_TEXT   := 0x91010000
BOOT_POLICY ?= $(FW_DIR)/qemutest/testdata/boot-policy-TEST-ONLY.txt

.PHONY: fw-bootloader
firmware: fw-bootloader
fw-bootloader: fw-toolchain
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

imx:
	@if [ "$(BOARD)" != usbarmory ]; then echo "imx: a flashable image is for hardware: make imx BOARD=usbarmory"; exit 1; fi
	@command -v $(MKIMAGE) >/dev/null 2>&1 || { echo "imx: mkimage not found (apt-get install u-boot-tools)"; exit 1; }
	@$(MAKE) --no-print-directory -f $(FW_DIR)/firmware.mk firmware BOARD=usbarmory
	cd $(FW_ROOT) && $(FW_GO) run ./firmware/cmd/fwimage bin $(FW_BUILD)/coffer-os.elf $(FW_BUILD)/coffer-os.bin
	cd $(FW_ROOT) && $(FW_GO) mod download github.com/usbarmory/tamago
	cp -f "$$(cd $(FW_ROOT) && $(FW_GO) list -m -f '{{.Dir}}' github.com/usbarmory/tamago)/board/usbarmory/mk2/imximage.cfg" $(FW_BUILD)/coffer-os.dcd
	chmod 644 $(FW_BUILD)/coffer-os.dcd
	@# GoTEE: keep TrustZone memory protection (disable the TZASC bypass) from DDR init on.
	echo "DATA 4 0x020e4024 0x00000001  # TZASC_BYPASS" >> $(FW_BUILD)/coffer-os.dcd
	$(MKIMAGE) -n $(FW_BUILD)/coffer-os.dcd -T imximage -e $(OS_TEXT) -d $(FW_BUILD)/coffer-os.bin $(FW_BUILD)/coffer-os.imx
	cd $(FW_ROOT) && $(FW_GO) run ./firmware/cmd/fwimage patch-entry $(FW_BUILD)/coffer-os.elf $(FW_BUILD)/coffer-os.imx
	@echo "imx: $(FW_BUILD)/coffer-os.imx (unsigned; HAB signing not done here)"

# QEMU integration tests, on an image built with the coffer_crashtest tag (the
# applet panics on one magic request, to test the OS restarting it) in its own
# folder. First the USB armory firmware is built, in its own folder too, so
# that the hardware code, which no other test compiles, fails the run when it
# does not build. Without QEMU or the toolchain: one line, exit 0.
FW_TEST_BUILD  := $(FW_ROOT)/build/firmware/qemu-test
FW_CHECK_BUILD := $(FW_ROOT)/build/firmware/usbarmory-check

test-firmware:
	@if ! command -v $(QEMU) >/dev/null 2>&1; then \
		echo "test-firmware: SKIPPED: $(QEMU) not found (apt-get install qemu-system-arm)"; exit 0; \
	fi; \
	if ! $(FW_TAMAGO_OK); then \
		echo "test-firmware: SKIPPED: $(FW_TAMAGO_MISSING) (see firmware/README-firmware.md)"; exit 0; \
	fi; \
	$(MAKE) --no-print-directory -f $(FW_DIR)/firmware.mk firmware TAMAGO=$(TAMAGO) BOARD=usbarmory FW_BUILD=$(FW_CHECK_BUILD) FW_TAGS= && \
	$(MAKE) --no-print-directory -f $(FW_DIR)/firmware.mk firmware TAMAGO=$(TAMAGO) BOARD=qemu FW_BUILD=$(FW_TEST_BUILD) FW_TAGS=coffer_crashtest && \
	cd $(FW_ROOT) && COFFER_FIRMWARE=$(FW_TEST_BUILD)/coffer-os.elf COFFER_QEMU=$(QEMU) \
		COFFER_BOOTLOADER=$(FW_TEST_BUILD)/coffer-boot.elf \
		$(FW_GO) test -count=1 -timeout 30m -v ./firmware/qemutest && \
	COFFER_FIRMWARE=$(FW_TEST_BUILD)/coffer-os.elf COFFER_QEMU=$(QEMU) \
		$(FW_GO) test -count=1 -timeout 10m -v -run 'TestE2EQEMUVault' ./client/cmd/coffer

fw-clean:
	rm -rf $(FW_ROOT)/build/firmware $(FW_DIR)/os/applet.elf

.DEFAULT_GOAL := $(FW_SAVED_GOAL)
