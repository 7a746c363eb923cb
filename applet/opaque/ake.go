package opaque

import "github.com/cloudflare/circl/group"

// The 3DH key schedule of RFC 9807 section 6.4, shared by the server and the
// test client so that both halves run the same code the vectors check.

// preamble is RFC 9807's Preamble: everything both parties saw, in order.
//
//	"OPAQUEv1-" || context<2> || client_identity<2> || ke1 ||
//	server_identity<2> || credential_response || server_nonce ||
//	server_public_keyshare
func preamble(context, clientIdentity, ke1, serverIdentity, credentialResponse, serverNonce, serverKeyshare []byte) []byte {
	out := make([]byte, 0, len(labelPreamble)+6+len(context)+len(clientIdentity)+len(ke1)+
		len(serverIdentity)+len(credentialResponse)+len(serverNonce)+len(serverKeyshare))
	out = append(out, labelPreamble...)
	out = appendVector(out, context)
	out = appendVector(out, clientIdentity)
	out = append(out, ke1...)
	out = appendVector(out, serverIdentity)
	out = append(out, credentialResponse...)
	out = append(out, serverNonce...)
	return append(out, serverKeyshare...)
}

// tripleDH returns ikm = k1*B1 || k2*B2 || k3*B3 (dh1 || dh2 || dh3 in
// RFC 9807 section 6.4.2/6.4.3), overwriting the separate shares.
func tripleDH(k1 group.Scalar, b1 group.Element, k2 group.Scalar, b2 group.Element, k3 group.Scalar, b3 group.Element) []byte {
	dh1, dh2, dh3 := diffieHellman(k1, b1), diffieHellman(k2, b2), diffieHellman(k3, b3)
	defer wipe(dh1, dh2, dh3)
	return concat(dh1, dh2, dh3)
}

// akeKeys are the outputs of DeriveKeys, plus the handshake secret that the
// RFC vectors list as an intermediate.
type akeKeys struct {
	handshakeSecret []byte
	serverMACKey    []byte // Km2
	clientMACKey    []byte // Km3
	sessionKey      []byte
}

// deriveKeys is RFC 9807's DeriveKeys(ikm, preamble) where ikm = dh1||dh2||dh3.
func deriveKeys(ikm, preambleHash []byte) akeKeys {
	prk := extract(ikm)
	defer wipe(prk)
	var k akeKeys
	k.handshakeSecret = deriveSecret(prk, labelHandshakeSecret, preambleHash)
	k.sessionKey = deriveSecret(prk, labelSessionKey, preambleHash)
	k.serverMACKey = deriveSecret(k.handshakeSecret, labelServerMAC, nil)
	k.clientMACKey = deriveSecret(k.handshakeSecret, labelClientMAC, nil)
	return k
}

// wipe overwrites every key.
func (k *akeKeys) wipe() {
	wipe(k.handshakeSecret, k.serverMACKey, k.clientMACKey, k.sessionKey)
}

// macs computes server_mac = MAC(Km2, Hash(preamble)) and the client's
// client_mac = MAC(Km3, Hash(preamble || server_mac)).
func (k *akeKeys) macs(preamble []byte) (serverMAC, clientMAC []byte) {
	serverMAC = mac(k.serverMACKey, hash(preamble))
	clientMAC = mac(k.clientMACKey, hash(concat(preamble, serverMAC)))
	return serverMAC, clientMAC
}
