//go:build tamago && arm && coffer_crashtest

package main

import "time"

// Test builds (make test-firmware) give up on a hung applet sooner, so that
// the QEMU test of the watchdog is quick.
func init() { hangLimit = 3 * time.Second }
