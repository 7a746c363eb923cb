// Package transport carries the framing protocol (protocol/FRAMING.md)
// between the machines around a vault: unix sockets and loopback TCP (the
// software vault, QEMU's UART), and the USB armory's CDC-ACM serial port,
// found by its USB vendor and product ids.
//
// Both sides use it: cofferd and the provisioning station dial, the
// software vault listens. It knows nothing of the vault's logic, so the
// untrusted host daemon links it without linking trusted code.
package transport
