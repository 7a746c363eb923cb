//go:build coffer_crashtest

package main

import (
	"bytes"
	"context"
	"fmt"
	"unsafe"

	"github.com/cofferhsm/coffer/board"
	"github.com/cofferhsm/coffer/protocol"
)

// CrashRequest is a payload that makes a test build of the applet (built with
// -tags coffer_crashtest, as `make test-firmware` does) panic outside the
// vault's own recovery, so that the QEMU tests can watch the OS restart it.
// Production builds answer it as any malformed request.
var CrashRequest = []byte("coffer-test: crash the applet now")

// PeekRequest makes a test build read the OS's memory, which must fault.
var PeekRequest = []byte("coffer-test: read the OS's memory")

// HangRequest makes a test build spin for ever without calling the OS, for
// the OS's hang watchdog.
var HangRequest = []byte("coffer-test: hang the applet now")

// SemihostSVCPrefix, followed by a host path, makes a test build ask the
// host, through ARM semihosting calls from user mode (SYS_OPEN, then
// SYS_WRITE, with svc 0x123456), to create that file and write to it. QEMU
// runs with userspace=off, so the calls are plain supervisor calls, which
// the OS must refuse.
var SemihostSVCPrefix = []byte("coffer-test: semihosting svc open+write ")

// SemihostHLTPrefix does the same with the other A32 semihosting trap,
// hlt 0xf000, an undefined instruction on the Cortex-A7.
var SemihostHLTPrefix = []byte("coffer-test: semihosting hlt open+write ")

func testHook(h protocol.Handler) protocol.Handler {
	return func(ctx context.Context, req []byte) []byte {
		for _, p := range []struct {
			prefix []byte
			hlt    bool
		}{{SemihostSVCPrefix, false}, {SemihostHLTPrefix, true}} {
			if path, ok := bytes.CutPrefix(req, p.prefix); ok {
				open, write := semihostOpenWrite(path, p.hlt)
				// Reached only if the OS let the applet go on.
				return protocol.EncodeError(protocol.Errorf(protocol.CodeInternal,
					"semihosting from the applet was not stopped: SYS_OPEN %d, SYS_WRITE %d", open, write))
			}
		}
		if bytes.Equal(req, CrashRequest) {
			go func() { panic("coffer test build: crash requested") }()
			select {}
		}
		if bytes.Equal(req, PeekRequest) {
			// The OS's code, which user mode must not be able to read.
			return protocol.EncodeError(protocol.Errorf(protocol.CodeInternal, "read OS memory: %s", fmt.Sprint(peek(board.OSText))))
		}
		if bytes.Equal(req, HangRequest) {
			for {
			}
		}
		return h(ctx, req)
	}
}

// peek reads one byte at a physical address (the applet's mapping is flat).
func peek(addr uintptr) byte {
	return *(*byte)(unsafe.Add(nil, addr))
}
