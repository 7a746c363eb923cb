//go:build !linux

package store

func preallocate(string, uint64) error { return nil }
