//go:build coffer_crashtest && tamago && arm

#include "textflag.h"

// func semihostSVC(op uint32, arg unsafe.Pointer) int32
//
// An ARM-state semihosting call: r0 = operation, r1 = parameter block.
TEXT ·semihostSVC(SB),NOSPLIT,$0-12
	MOVW	op+0(FP), R0
	MOVW	arg+4(FP), R1
	WORD	$0xef123456	// svc 0x123456
	MOVW	R0, ret+8(FP)
	RET

// func semihostHLT(op uint32, arg unsafe.Pointer) int32
//
// The same through the A32 HLT trap QEMU also takes for semihosting.
TEXT ·semihostHLT(SB),NOSPLIT,$0-12
	MOVW	op+0(FP), R0
	MOVW	arg+4(FP), R1
	WORD	$0xe10f0070	// hlt 0xf000
	MOVW	R0, ret+8(FP)
	RET
