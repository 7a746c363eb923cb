package main

import (
	"encoding/binary"
	"fmt"
)

// The applet calls the OS with svc 0 (GoTEE's syscall package). Any other
// immediate is a call for someone else: ARM semihosting in particular (svc
// 0x123456 in ARM state, svc 0xab in Thumb state) asks a debugger or
// emulator for host files. QEMU serves semihosting to privileged code only
// (userspace=off), so such a trap from the applet reaches the OS as a plain
// supervisor call, whose r0 (a semihosting operation, 0x01 for SYS_OPEN)
// would otherwise be taken for the OS call of that number.
const (
	svcOS             = 0
	svcSemihostingA32 = 0x123456
	svcSemihostingT32 = 0xab
)

// svcImmediate decodes the supervisor call the applet trapped with: the
// instruction before ret, the return address, in mem, which holds the
// applet's region from base. ok is false if that address is outside the
// region or the instruction is not an SVC.
func svcImmediate(mem []byte, base, ret uint32, thumb bool) (imm uint32, ok bool) {
	size := uint32(4)
	if thumb {
		size = 2
	}
	pc := ret - size
	if ret < size || pc < base || pc-base > uint32(len(mem))-size {
		return 0, false
	}
	off := pc - base
	if thumb {
		ins := binary.LittleEndian.Uint16(mem[off:])
		return uint32(ins & 0xff), ins&0xff00 == 0xdf00
	}
	ins := binary.LittleEndian.Uint32(mem[off:])
	// cond 1111 imm24; cond 0b1111 is another instruction class.
	return ins & 0x00ffffff, ins&0x0f000000 == 0x0f000000 && ins>>28 != 0xf
}

// refusedSVC describes a supervisor call the OS does not serve.
func refusedSVC(imm uint32, ok, thumb bool, pc, r0 uint32) error {
	switch {
	case !ok:
		return fmt.Errorf("refused supervisor call at pc %#08x: not an SVC instruction in the applet's region", pc)
	case (!thumb && imm == svcSemihostingA32) || (thumb && imm == svcSemihostingT32):
		return fmt.Errorf("refused supervisor call svc #%#x (semihosting operation %#x: the applet may not reach the host) at pc %#08x", imm, r0, pc)
	}
	return fmt.Errorf("refused supervisor call svc #%#x (r0 %#x) at pc %#08x", imm, r0, pc)
}
