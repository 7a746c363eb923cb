// Package host is cofferd, Coffer's host daemon: the operator's server
// between Coffer clients (HTTP) and vault devices (the framed vault protocol
// over a unix socket or a USB serial port, protocol/transport). It links no
// vault code: the software vault is a process of its own, reached on a
// socket like the others.
//
// The host is NOT trusted (see DESIGN.md). Everything secret in the vault
// protocol is sealed to the vault or to the client, and this package keeps
// it that way: it decodes only the clear routing fields of a request (its
// type, and the user id of register-start, login-start, user-status and the realm
// requests), relays only the requests a client sends (never the
// provisioning requests, which a station sends to a vault connected to it
// directly), relays the bytes untouched, and never logs a body. What it
// adds is what an operator needs around a vault: accounts with bearer
// tokens, a per-account rate limit on login starts and realm guesses,
// bounded per-device queues with explicit backpressure, per-request
// timeouts, reconnection to devices that reboot, structured logs,
// Prometheus metrics and a health endpoint; and, for realm sets
// (protocol/REALMS.md), storage of each account's public manifests and
// sealed resume blobs, which it cannot read or check either.
//
// It never retries a request on its own: a login step that reached the vault
// may have been counted as a guess.
//
// The HTTP contract is API.md beside this file; operating cofferd is
// OPERATIONS.md; the command is cmd/cofferd.
package host
