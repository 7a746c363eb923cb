// Package tos is the portable core of Coffer's Trusted OS: the services it
// offers the Trusted Applet through the call interface of firmware/api
// (Service), the queue that relays protocol requests from the transport to
// the applet and replies back (Relay), the ELF loader for the applet image
// (LoadELF), the per-purpose keys derived from the device key (DeriveKeys),
// and the OS's ownership of the RPMB partition: the provisioning fuse, the
// one-time key programming, and the store's anchor in it (OpenAnchor,
// Anchor).
//
// It has no hardware imports, so the whole OS ↔ applet contract is tested on
// any machine: the tests run the real applet logic against a Service over
// plain memory. The GoTEE glue that turns supervisor calls into Service.Call
// lives in firmware/os behind `//go:build tamago`.
package tos
