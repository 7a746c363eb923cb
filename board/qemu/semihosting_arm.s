//go:build tamago && board_qemu && arm

#include "textflag.h"

// func semihost(op uint32, arg unsafe.Pointer) int32
//
// ARM semihosting call (ARM state): r0 = operation, r1 = parameter block,
// svc 0x123456; the result is in r0. QEMU serves it for privileged code
// when started with -semihosting-config enable=on,userspace=off.
TEXT ·semihost(SB),NOSPLIT,$0-12
	MOVW	op+0(FP), R0
	MOVW	arg+4(FP), R1
	WORD	$0xef123456	// svc 0x123456
	MOVW	R0, ret+8(FP)
	RET

// func semihostExit(reason uint32)
//
// SYS_EXIT takes the reason in r1 itself on 32-bit ARM.
TEXT ·semihostExit(SB),NOSPLIT,$0-4
	MOVW	$0x18, R0
	MOVW	reason+0(FP), R1
	WORD	$0xef123456	// svc 0x123456
	RET
