//go:build tamago && arm

package main

import (
	"runtime/goos"
	"time"

	"github.com/usbarmory/tamago/arm"
	"github.com/usbarmory/tamago/soc/nxp/imx6ul"
)

// minIdle is the shortest wait worth arming the timer for.
const minIdle = 50 * time.Microsecond

// initIdle makes the OS sleep (WFI) when none of its goroutines can run,
// until its next timer, instead of spinning: it spares power on the device
// and a host core under QEMU. The secure physical timer's interrupt is routed
// to the CPU but stays masked (CPSR.I), which still ends a WFI; nothing
// acknowledges it, and disarming the timer withdraws it. The applet runs with
// interrupts masked as well, and the timer is disarmed whenever it runs.
func initIdle() {
	imx6ul.GIC.Init(true, false)
	imx6ul.GIC.EnableInterrupt(arm.TIMER_IRQ, true)
	goos.Idle = func(until int64) {
		if until-imx6ul.ARM.GetTime() < int64(minIdle) {
			return
		}
		imx6ul.ARM.SetAlarm(until)
		imx6ul.ARM.WaitInterrupt()
		imx6ul.ARM.SetAlarm(0)
	}
}
