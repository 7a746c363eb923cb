//go:build !(darwin || dragonfly || freebsd || linux || netbsd || openbsd)

package main

// echoOff is term.ReadPassword's business alone here.
func echoOff(fd int) (restore func()) { return func() {} }
