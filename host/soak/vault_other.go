//go:build !linux

package soak

// sample and storeBytes read /proc and block counts, which only Linux has
// here: elsewhere the report shows zeros.
func (v *vaultRunner) sample() procSample { return procSample{} }

func (v *vaultRunner) storeBytes() int64 { return 0 }
