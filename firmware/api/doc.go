// Package api is the call interface between Coffer's Trusted OS (firmware/)
// and its Trusted Applet (applet/ta), both GoTEE programs on the same core.
//
// The applet runs in Secure World user mode and never touches hardware. It
// asks the OS for everything it needs with a supervisor call (SVC) that
// names an operation and lends the OS one buffer of its own memory:
//
//	r0 = operation, r1 = buffer address, r2 = buffer length
//	r0 ← result: ≥ 0 success (a length or a value), < 0 an Errno
//
// (the register use of GoTEE's syscall.Read, so the applet issues every call
// with it). The OS checks that the whole buffer lies inside the applet's
// memory, reads the request from it, and writes the answer back into it; it
// never follows a pointer found inside a buffer. Every operation has a fixed
// size or a bound below, checked on both sides.
//
// GoTEE's own numbers 0-5 (exit, print a character, nanotime, random, RPC)
// keep their meaning; Coffer's operations start at OpBase.
//
// The package is portable Go: the encodings are tested on any platform, and
// the OS side (firmware/tos) and the applet side (applet/runtime) share it.
package api
