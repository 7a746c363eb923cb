// Package crashtest is the contract between a test build of the Trusted
// Applet (built with -tags coffer_crashtest, as `make test-firmware` does)
// and the QEMU tests that drive it: the requests on which it misbehaves on
// purpose, so that the tests can watch the Trusted OS contain it, and the
// panic message they look for on the console. Both sides import these
// constants, so they cannot drift apart. The package has no build tag and no
// code; production applets do not import it and answer these bytes as any
// malformed request.
package crashtest

const (
	// CrashRequest makes a test applet panic outside the vault's own
	// recovery, so that the OS must restart it.
	CrashRequest = "coffer-test: crash the applet now"

	// CrashPanic is the message of that panic, which the OS's console shows.
	CrashPanic = "coffer test build: crash requested"

	// PeekRequest makes a test applet read the OS's memory, which must fault.
	PeekRequest = "coffer-test: read the OS's memory"

	// HangRequest makes a test applet spin for ever without calling the OS,
	// for the OS's hang watchdog.
	HangRequest = "coffer-test: hang the applet now"

	// SemihostSVCPrefix, followed by a host path, makes a test applet ask
	// the host, through ARM semihosting calls from user mode (SYS_OPEN, then
	// SYS_WRITE, with svc 0x123456), to create that file and write to it.
	// QEMU runs with userspace=off, so the calls are plain supervisor calls,
	// which the OS must refuse.
	SemihostSVCPrefix = "coffer-test: semihosting svc open+write "

	// SemihostHLTPrefix does the same with the other A32 semihosting trap,
	// hlt 0xf000, an undefined instruction on the Cortex-A7.
	SemihostHLTPrefix = "coffer-test: semihosting hlt open+write "
)
