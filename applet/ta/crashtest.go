//go:build coffer_crashtest

package main

import (
	"bytes"
	"context"
	"fmt"
	"unsafe"

	"github.com/cofferhsm/coffer/applet/ta/crashtest"
	"github.com/cofferhsm/coffer/board"
	"github.com/cofferhsm/coffer/protocol"
)

// testHook lets a test build misbehave on the requests of package crashtest
// before the vault sees them.
func testHook(h protocol.Handler) protocol.Handler {
	return func(ctx context.Context, req []byte) []byte {
		for _, p := range []struct {
			prefix []byte
			hlt    bool
		}{{[]byte(crashtest.SemihostSVCPrefix), false}, {[]byte(crashtest.SemihostHLTPrefix), true}} {
			if path, ok := bytes.CutPrefix(req, p.prefix); ok {
				open, write := semihostOpenWrite(path, p.hlt)
				// Reached only if the OS let the applet go on.
				return protocol.EncodeError(protocol.Errorf(protocol.CodeInternal,
					"semihosting from the applet was not stopped: SYS_OPEN %d, SYS_WRITE %d", open, write))
			}
		}
		if string(req) == crashtest.CrashRequest {
			go func() { panic(crashtest.CrashPanic) }()
			select {}
		}
		if string(req) == crashtest.PeekRequest {
			// The OS's code, which user mode must not be able to read.
			return protocol.EncodeError(protocol.Errorf(protocol.CodeInternal, "read OS memory: %s", fmt.Sprint(peek(board.OSText))))
		}
		if string(req) == crashtest.HangRequest {
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
