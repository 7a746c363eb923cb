// Package vaulttest holds no code: its subpackages are the test support that
// tests across the repository share, one purpose each, so that a test
// imports only what it uses and each piece can change on its own:
//
//   - testclient: a protocol-level client on the vault's portable OPAQUE,
//     which runs wherever the vault does (in process, over a socket, in QEMU);
//   - memstore: the record store in RAM, with power cuts and snapshots;
//   - measure: latency percentiles and CPU time for benchmark reports;
//   - syncbuf: a buffer for logs and child output written concurrently;
//   - realmtest: a protocol-level driver of realms (types 16-21) and a
//     dealer of realm versions, as a registering client makes them.
package vaulttest
