//go:build tamago && arm

#include "textflag.h"

// The virtual timer (CNTV_*) gives the OS back the CPU while the applet runs:
// the OS keeps the physical timer for its own idle sleep.

// func vtimerArm(ticks uint32)
TEXT ·vtimerArm(SB),NOSPLIT,$0-4
	MOVW	ticks+0(FP), R0
	WORD	$0xf57ff06f		// isb sy
	MCR	15, 0, R0, C14, C3, 0	// CNTV_TVAL
	MOVW	$1, R0
	MCR	15, 0, R0, C14, C3, 1	// CNTV_CTL: enabled, not masked
	WORD	$0xf57ff06f		// isb sy
	RET

// func vtimerDisarm()
TEXT ·vtimerDisarm(SB),NOSPLIT,$0-0
	MOVW	$0, R0
	MCR	15, 0, R0, C14, C3, 1	// CNTV_CTL: disabled
	WORD	$0xf57ff06f		// isb sy
	RET
