//go:build coffer_crashtest && tamago && arm

package main

import (
	"runtime"
	"unsafe"
)

// defined in crashtest_arm.s
func semihostSVC(op uint32, arg unsafe.Pointer) int32
func semihostHLT(op uint32, arg unsafe.Pointer) int32

// ARM semihosting operations and the fopen mode "w".
const (
	shSysOpen  = 0x01
	shSysWrite = 0x05
	shModeW    = 4
)

// semihostOpenWrite asks the host to create the file at path and to write a
// line to it, as a debugger's semihosting would, and returns both results.
func semihostOpenWrite(path []byte, hlt bool) (open, write int32) {
	call := semihostSVC
	if hlt {
		call = semihostHLT
	}
	name := append(append([]byte(nil), path...), 0)
	msg := []byte("written by the trusted applet through semihosting\n")
	// The applet's mapping is flat: virtual addresses are physical.
	ob := &[3]uint32{uint32(uintptr(unsafe.Pointer(&name[0]))), shModeW, uint32(len(path))}
	open = call(shSysOpen, unsafe.Pointer(ob))
	wb := &[3]uint32{uint32(open), uint32(uintptr(unsafe.Pointer(&msg[0]))), uint32(len(msg))}
	write = call(shSysWrite, unsafe.Pointer(wb))
	runtime.KeepAlive(name)
	runtime.KeepAlive(msg)
	return open, write
}
