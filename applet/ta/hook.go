//go:build !coffer_crashtest

package main

import "github.com/cofferhsm/coffer/protocol"

// testHook is the identity outside test builds (see crashtest.go).
func testHook(h protocol.Handler) protocol.Handler { return h }
