// Package provision holds what vouching for a vault needs outside it: the
// offline provisioning key's file, and writing protocol messages (unsigned
// identities, signed bundles) to files. Identities are signed by
// protocol.SignIdentity.
//
// The provisioning command (firmware/cmd/coffer-provision) and the
// software vault's development self-provisioning (`softvault dev`) share
// it. It imports only protocol: the provisioning station links no vault
// code.
package provision
