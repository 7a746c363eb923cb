// Package storetest holds the storage devices the tests of the record store
// and of its users run on: a memory device (MemDevice), a device that
// simulates power cuts (CrashDevice) and an RPMB partition in memory
// (MemRPMB, NewMemAnchor). It is test support: only _test files import it.
package storetest
