//go:build tamago && arm

package main

import (
	"sync/atomic"
	"time"

	"github.com/usbarmory/tamago/soc/nxp/imx6ul"
)

// defined in vtimer_arm.s
func vtimerArm(ticks uint32)
func vtimerDisarm()

const (
	// timeSlice is how long the applet runs before the OS takes the CPU
	// back (to serve the transport, then resume it).
	timeSlice = 20 * time.Millisecond
	// hangLimit is how long the applet may go without a single call to
	// the OS before it is taken for hung and restarted. An idle applet
	// calls the OS at least every second (OpWait); the longest legitimate
	// computation (a login) takes tens of milliseconds.
	defaultHangLimit = 30 * time.Second
	// virtualTimerIRQ is the generic timer's virtual timer PPI.
	virtualTimerIRQ = 27
)

var (
	sliceTicks uint32
	hangLimit  = defaultHangLimit
)

// initSlices routes the virtual timer's interrupt to the CPU as a secure
// interrupt; the applet runs with IRQs unmasked, so when its slice ends it
// traps to the monitor, which returns to the OS.
func initSlices() {
	sliceTicks = uint32(float64(timeSlice.Nanoseconds()) / imx6ul.ARM.TimerMultiplier)
	imx6ul.GIC.EnableInterrupt(virtualTimerIRQ, true)
}

// lastCall is when the applet last made a call (unix nanoseconds of the OS
// clock), for the hang watchdog.
var lastCall atomic.Int64

func noteCall() { lastCall.Store(time.Now().UnixNano()) }

func sinceLastCall() time.Duration { return time.Duration(time.Now().UnixNano() - lastCall.Load()) }
