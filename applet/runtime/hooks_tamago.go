//go:build tamago && arm

package taruntime

import (
	"encoding/binary"
	"runtime"
	"runtime/goos"
	"sync/atomic"
	"time"
	_ "unsafe"

	"github.com/usbarmory/GoTEE/syscall"
	// cpuinit (the entry point) and the Hwinit0 hook, which does nothing
	// in user mode.
	"github.com/usbarmory/tamago/arm"

	"github.com/cofferhsm/coffer/board"
	"github.com/cofferhsm/coffer/firmware/api"
)

//go:linkname ramStart runtime/goos.RamStart
var ramStart uint32 = board.AppletStart

//go:linkname ramSize runtime/goos.RamSize
var ramSize uint32 = board.AppletSize

//go:linkname ramStackOffset runtime/goos.RamStackOffset
var ramStackOffset uint32 = 0x100

var cpu = &arm.CPU{}

// Hwinit1: the generic timer's frequency, which the OS set and lets user
// mode read (CNTKCTL.PL0PCTEN).
//
//go:linkname hwinit1 runtime/goos.Hwinit1
func hwinit1() {
	cpu.InitGenericTimers(0, 0)
	goos.Exit = exit
	goos.Idle = idle
}

//go:linkname nanotime runtime/goos.Nanotime
func nanotime() int64 {
	return cpu.GetTime()
}

//go:linkname printk runtime/goos.Printk
func printk(c byte) {
	syscall.Print(c)
}

//go:linkname initRNG runtime/goos.InitRNG
func initRNG() {}

//go:linkname getRandomData runtime/goos.GetRandomData
func getRandomData(b []byte) {
	for len(b) > 0 {
		n := min(len(b), api.MaxRandom)
		if r := int32(syscall.Read(api.OpRandom, b[:n], uint(n))); r != int32(n) {
			// No randomness: nothing the applet does is safe.
			exit(3)
		}
		b = b[n:]
	}
}

// exitCode is static so that exit allocates nothing.
var exitCode [4]byte

func exit(code int32) {
	binary.BigEndian.PutUint32(exitCode[:], uint32(code))
	syscall.Read(api.OpExit, exitCode[:], 4)
	// The OS stops the applet on OpExit; if it did not, fault.
	*(*int)(nil) = 0
}

// Call issues one call to the OS.
func Call(op uint32, buf []byte) int32 {
	return int32(syscall.Read(uint(op), buf, uint(len(buf))))
}

// TrustedOS returns the handle on the Trusted OS, whose WaitRequest parks the
// goroutine and lets the idle hook wake it.
func TrustedOS() *OS {
	o := NewOS(Call)
	o.park = park
	return o
}

var (
	parkedG  atomic.Uint32 // g of the goroutine in WaitRequest, or 0
	waitBuf  [api.WaitSize]byte
	maxSleep = int64(10 * time.Second)
)

func park(*OS) {
	g, _ := runtime.GetG()
	parkedG.Store(uint32(g))
	// Woken early by idle (runtime.Wake) when a request arrives.
	time.Sleep(time.Hour)
	parkedG.Store(0)
}

// idle runs when no goroutine can: wait in the OS until the next timer, or
// until a request arrives if a goroutine is parked in WaitRequest.
func idle(until int64) {
	d := until - nanotime()
	if d <= 0 {
		return
	}
	d = min(d, maxSleep)
	g := parkedG.Load()
	binary.BigEndian.PutUint64(waitBuf[:], uint64(d))
	var flags uint32
	if g != 0 {
		flags = api.WaitRequest
	}
	binary.BigEndian.PutUint32(waitBuf[8:], flags)
	if syscall.Read(api.OpWait, waitBuf[:], api.WaitSize) == 1 && g != 0 {
		runtime.Wake(uint(g))
	}
}
