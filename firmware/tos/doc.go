// Package tos is the portable core of Coffer's Trusted OS: the services it
// offers the Trusted Applet through the call interface of firmware/api
// (Service), the queue that relays protocol requests from the transport to
// the applet and replies back (Relay), the ELF loader for the applet image
// and, in the bootloader, the OS image (LoadELF), the per-purpose keys
// derived from the device key and the release key's identity (DeriveKeys),
// the OS's ownership of the RPMB partition: the provisioning fuse, the
// one-time key programming, and the store's anchor in it (OpenAnchor,
// Anchor), and the boot chain's share of it: the minimum release version
// in another RPMB block (ReadMinVersion, RaiseMinVersion) and the boot-info
// block the bootloader leaves for the OS (BootInfo).
//
// It has no hardware imports, so the whole OS ↔ applet contract is tested on
// any machine: the tests run the real applet logic against a Service over
// plain memory. The GoTEE glue that turns supervisor calls into Service.Call
// lives in firmware/os behind `//go:build tamago`.
package tos
