package opaque

import "fmt"

// Identities are the names the two parties bind into the envelope and the
// handshake. Nil (or empty) means "the party's public key", as in RFC 9807.
// Both sides must use the same values at registration and at every login,
// or the login fails. Coffer uses the user id as the client identity.
type Identities struct {
	Client, Server []byte
}

// resolve fills in the RFC 9807 defaults and checks the lengths that the
// two-byte length prefixes can carry.
func (ids Identities) resolve(clientPublicKey, serverPublicKey []byte) (client, server []byte, err error) {
	client, server = ids.Client, ids.Server
	if len(client) == 0 {
		client = clientPublicKey
	}
	if len(server) == 0 {
		server = serverPublicKey
	}
	if len(client) > maxVectorLength || len(server) > maxVectorLength {
		return nil, nil, fmt.Errorf("%w: identity longer than %d bytes", ErrInvalidArgument, maxVectorLength)
	}
	return client, server, nil
}

// appendVector appends a two-byte big-endian length and then b, the
// encoding of an opaque<0..2^16-1> field. Callers check the length first.
func appendVector(dst, b []byte) []byte {
	dst = append(dst, byte(len(b)>>8), byte(len(b)))
	return append(dst, b...)
}

// cleartextCredentials is RFC 9807's CleartextCredentials serialized:
// server_public_key || server_identity<1..2^16-1> || client_identity<1..2^16-1>,
// with identities already resolved.
func cleartextCredentials(serverPublicKey, serverIdentity, clientIdentity []byte) []byte {
	out := make([]byte, 0, len(serverPublicKey)+4+len(serverIdentity)+len(clientIdentity))
	out = append(out, serverPublicKey...)
	out = appendVector(out, serverIdentity)
	return appendVector(out, clientIdentity)
}

// checkContext checks the application context string's length.
func checkContext(context []byte) error {
	if len(context) > maxVectorLength {
		return fmt.Errorf("%w: context longer than %d bytes", ErrInvalidArgument, maxVectorLength)
	}
	return nil
}
