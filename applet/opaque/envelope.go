package opaque

import "github.com/cloudflare/circl/group"

// The envelope (RFC 9807 section 4.1) is client-side logic: the server only
// stores and masks it. It lives here for the test client and the vectors.

// envelopeKeys are what Store and Recover expand from the randomized
// password and the envelope nonce.
type envelopeKeys struct {
	authKey       []byte
	exportKey     []byte
	clientPrivate group.Scalar
	clientPublic  []byte
}

// deriveEnvelopeKeys expands auth_key, export_key and the client's key pair
// seed from randomized_password and envelope_nonce.
func deriveEnvelopeKeys(randomizedPassword, nonce []byte) (envelopeKeys, error) {
	var k envelopeKeys
	k.authKey = expand(randomizedPassword, concat(nonce, []byte(labelAuthKey)), HashSize)
	k.exportKey = expand(randomizedPassword, concat(nonce, []byte(labelExportKey)), HashSize)
	seed := expand(randomizedPassword, concat(nonce, []byte(labelPrivateKey)), SeedSize)
	defer wipe(seed)
	sk, pk, err := deriveDiffieHellmanKeyPair(seed)
	if err != nil {
		k.wipe()
		return envelopeKeys{}, err
	}
	k.clientPrivate = sk
	k.clientPublic = encodeElement(pk)
	return k, nil
}

func (k *envelopeKeys) wipe() {
	wipe(k.authKey, k.exportKey)
	wipeScalar(k.clientPrivate)
}

// authTag is MAC(auth_key, envelope_nonce || CleartextCredentials), with
// the identities resolved against the two public keys.
func (k *envelopeKeys) authTag(nonce, serverPublicKey []byte, ids Identities) ([]byte, error) {
	clientIdentity, serverIdentity, err := ids.resolve(k.clientPublic, serverPublicKey)
	if err != nil {
		return nil, err
	}
	return mac(k.authKey, nonce, cleartextCredentials(serverPublicKey, serverIdentity, clientIdentity)), nil
}
