//go:build tamago && arm

#include "textflag.h"

// func jumpToOS(entry uint32)
//
// Runs in system mode (privileged), where tamago runs. The data cache was
// cleaned and invalidated by set/way just before (startOS). Never returns.
TEXT ·jumpToOS(SB),NOSPLIT|NOFRAME,$0-4
	MOVW	entry+0(FP), R4

	WORD	$0xf10c01c0	// cpsid aif: no interrupt from here on

	// SCTLR: MMU (M, bit 0), data cache (C, bit 2), branch prediction
	// (Z, bit 11) and instruction cache (I, bit 12) off. The code runs
	// at the same address with the MMU off (tamago maps memory flat).
	MRC	15, 0, R0, C1, C0, 0
	BIC	$0x1800, R0	// I, Z
	BIC	$0x5, R0	// C, M
	MCR	15, 0, R0, C1, C0, 0
	WORD	$0xf57ff04f	// dsb sy
	WORD	$0xf57ff06f	// isb sy

	// Drop anything cached for the old mappings and the old code.
	MOVW	$0, R0
	MCR	15, 0, R0, C7, C5, 0	// ICIALLU: invalidate the instruction cache
	MCR	15, 0, R0, C7, C5, 6	// BPIALL: invalidate the branch predictor
	MCR	15, 0, R0, C8, C7, 0	// TLBIALL: invalidate the unified TLB
	WORD	$0xf57ff04f	// dsb sy
	WORD	$0xf57ff06f	// isb sy

	// r0 = 0, r1 = r2 = 0 (no machine type, no parameters), then the OS.
	MOVW	$0, R1
	MOVW	$0, R2
	B	(R4)
