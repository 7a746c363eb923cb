//go:build !linux

package store

func preallocate(*FileDevice) error { return nil }
