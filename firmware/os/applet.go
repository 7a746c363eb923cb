//go:build tamago && arm

package main

import (
	"fmt"
	"time"

	"github.com/usbarmory/GoTEE/monitor"
	"github.com/usbarmory/tamago/arm"
	"github.com/usbarmory/tamago/dma"

	"github.com/cofferhsm/coffer/board"
	"github.com/cofferhsm/coffer/firmware/api"
	"github.com/cofferhsm/coffer/firmware/tos"
)

// supervisor loads the applet, runs it, and starts it again when it stops.
type supervisor struct {
	svc    *tos.Service
	relay  *tos.Relay
	region *dma.Region
	mem    []byte // the whole applet region, as the OS sees it
}

func newSupervisor(svc *tos.Service, relay *tos.Relay) (*supervisor, error) {
	region, err := dma.NewRegion(board.AppletStart, board.AppletSize, false)
	if err != nil {
		return nil, err
	}
	addr, mem := region.Reserve(board.AppletSize, 0)
	if addr != board.AppletStart || len(mem) != board.AppletSize {
		return nil, fmt.Errorf("reserved %#x+%d, want the whole region", addr, len(mem))
	}
	return &supervisor{svc: svc, relay: relay, region: region, mem: mem}, nil
}

func (s *supervisor) run() {
	backoff := time.Second
	for start := 1; ; start++ {
		began := time.Now()
		err := s.runOnce()
		s.relay.AppletStopped()
		// Wipe whatever the stopped applet held (keys, sessions).
		clear(s.mem)
		exited, code := s.svc.Exited()
		switch {
		case err != nil:
			logf("applet: CRASHED (start %d): %v", start, err)
		case exited:
			logf("applet: exited with code %d (start %d)", code, start)
		default:
			logf("applet: stopped (start %d)", start)
		}
		if time.Since(began) > time.Minute {
			backoff = time.Second
		}
		logf("applet: restarting in %v; committed state is kept", backoff)
		time.Sleep(backoff)
		backoff = min(2*backoff, 30*time.Second)
	}
}

// runOnce loads and runs the applet once. The region need not be zero (the
// loader zeroes .bss and the applet's runtime clears what it allocates), so
// it is not cleared here, which would cost about 0.6 s of boot under QEMU;
// run wipes it after every stop so that a stopped applet's secrets do not
// linger.
func (s *supervisor) runOnce() error {
	entry, err := tos.LoadELF(appletELF, tos.Image{
		Base:  board.AppletStart,
		Size:  board.AppletSize,
		Write: func(off uint32, p []byte) { copy(s.mem[off:], p) },
	})
	if err != nil {
		return err
	}
	ctx, err := monitor.Load(uint(entry), s.region, true)
	if err != nil {
		return err
	}
	ctx.Server = nil
	ctx.R13 = uint32(s.region.End())
	ctx.Handler = s.handle
	// Unmask IRQs in user mode: the virtual timer ends each time slice.
	// GoTEE calls MMU before every switch to the applet: arm it there.
	ctx.SPSR &^= 1 << 7
	ctx.MMU = func() { vtimerArm(sliceTicks) }
	noteCall()
	s.svc.Start()
	logf("applet: starting at %#x (user mode, region %#x-%#x)", entry, s.region.Start(), s.region.End())
	if err := ctx.Run(); err != nil {
		// GoTEE reports aborts by the mode that took them (ABT, UND).
		return fmt.Errorf("%v (%s exception at pc %#08x)\n%s", err, arm.VectorName(ctx.ExceptionVector), ctx.R15, ctx)
	}
	return nil
}

// handle serves one exception raised by the applet.
func (s *supervisor) handle(ctx *monitor.ExecCtx) error {
	vtimerDisarm()
	if ctx.ExceptionVector == arm.IRQ {
		// End of a time slice: let the OS run, then resume the applet
		// (GoTEE's Run rewinds the return address).
		if d := sinceLastCall(); d > hangLimit {
			return fmt.Errorf("applet hung: no call to the OS for %v (pc %#08x)", d.Round(time.Second), ctx.R15)
		}
		return nil
	}
	defer noteCall()
	if ctx.ExceptionVector != arm.SUPERVISOR {
		return fmt.Errorf("%s exception at pc %#08x lr %#08x", arm.VectorName(ctx.ExceptionVector), ctx.R15, ctx.R14)
	}
	// Only GoTEE's svc 0 is a call to this OS (see svc.go).
	thumb := ctx.SPSR&(1<<5) != 0
	if imm, ok := svcImmediate(s.mem, board.AppletStart, ctx.R15, thumb); !ok || imm != svcOS {
		return refusedSVC(imm, ok, thumb, ctx.R15, ctx.R0)
	}
	op := uint32(ctx.A0())
	switch op {
	case api.SysWrite:
		s.svc.PrintChar(byte(ctx.A1()))
		return nil
	case api.SysNanotime:
		ctx.Ret(time.Now().UnixNano())
		return nil
	case api.SysExit:
		s.svc.Call(op, tos.SliceBuffer(nil))
		ctx.Stop()
		return nil
	}
	buf, ok := s.window(uint32(ctx.A1()), uint32(ctx.A2()))
	if !ok {
		ctx.Ret(int(api.EINVAL))
		return nil
	}
	r, stop := s.svc.Call(op, buf)
	ctx.Ret(int(r))
	if stop {
		ctx.Stop()
	}
	return nil
}

// window returns the applet buffer [addr, addr+n) if all of it lies inside
// the applet region. The OS never follows any other applet pointer.
func (s *supervisor) window(addr, n uint32) (tos.Buffer, bool) {
	if n == 0 {
		return tos.SliceBuffer(nil), true
	}
	if n > api.MaxBuffer || addr < board.AppletStart || addr-board.AppletStart > board.AppletSize-n {
		return nil, false
	}
	off := addr - board.AppletStart
	return tos.SliceBuffer(s.mem[off : off+n : off+n]), true
}
