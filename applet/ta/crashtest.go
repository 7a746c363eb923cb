//go:build coffer_crashtest

package main

import (
	"bytes"
	"context"

	"github.com/cofferhsm/coffer/protocol"
)

// CrashRequest is a payload that makes a test build of the applet (built with
// -tags coffer_crashtest, as `make test-firmware` does) panic outside the
// vault's own recovery, so that the QEMU tests can watch the OS restart it.
// Production builds answer it as any malformed request.
var CrashRequest = []byte("coffer-test: crash the applet now")

// HangRequest makes a test build spin for ever without calling the OS, for
// the OS's hang watchdog.
var HangRequest = []byte("coffer-test: hang the applet now")

func testHook(h protocol.Handler) protocol.Handler {
	return func(ctx context.Context, req []byte) []byte {
		if bytes.Equal(req, CrashRequest) {
			go func() { panic("coffer test build: crash requested") }()
			select {}
		}
		if bytes.Equal(req, HangRequest) {
			for {
			}
		}
		return h(ctx, req)
	}
}
