// Package taruntime (folder applet/runtime) is the Trusted Applet's runtime
// glue: what a TamaGo program needs from its environment when it runs in
// Secure World user mode under Coffer's Trusted OS, and the applet's side of
// the call interface of firmware/api.
//
// GoTEE's own applet package cannot be used with tamago 1.26 (it defines
// runtime.hwinit1, which tamago 1.26 moved to runtime/goos), so this
// package provides the runtime/goos hooks itself (hooks_tamago.go):
//
//   - memory: the applet's region (board.AppletStart, board.AppletSize);
//   - Hwinit1: the ARM generic timer, which the OS lets user mode read;
//   - Nanotime: that timer; no call to the OS;
//   - Printk: one character to the OS (GoTEE's print call), for the
//     runtime's own messages and panics;
//   - GetRandomData: random bytes from the OS (OpRandom);
//   - Exit: OpExit, so a panic ends the applet and the OS restarts it;
//   - Idle: when no goroutine can run, OpWait until the next timer or a
//     request, waking the goroutine parked in WaitRequest.
//
// The rest (OS, the client of every operation, and the storage.Device and
// storage.Anchor it provides) is portable and tested on any machine
// against the OS's portable core (firmware/tos).
package taruntime
