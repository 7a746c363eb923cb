package opaque

import "github.com/cloudflare/circl/group"

// evaluate is the OPRF's BlindEvaluate (RFC 9497 base mode): it checks the
// client's blinded element and multiplies it by the OPRF key. This is the
// one operation that turns a password guess into something checkable, so
// the vault must count a guess before calling it on a real user's key.
func evaluate(key OPRFKey, blinded group.Element) ([]byte, error) {
	k, err := decodeScalar(key[:], "OPRF key")
	if err != nil {
		return nil, err
	}
	defer wipeScalar(k)
	return encodeElement(g.NewElement().Mul(blinded, k)), nil
}

// CreateRegistrationResponse answers a registration request
// (blinded_message) with evaluated_message || server_public_key
// (RFC 9807 section 5.2.2, with the OPRF key passed in rather than derived:
// the vault draws a fresh one per registration with NewOPRFKey).
func CreateRegistrationResponse(request []byte, serverPublicKey [ElementSize]byte, key OPRFKey) ([]byte, error) {
	if len(request) != RegistrationRequestSize {
		return nil, malformed("registration request", len(request), RegistrationRequestSize)
	}
	// Refuse to hand out a public key that no client could use: the
	// caller's key material is broken and the client would fail later.
	if _, err := decodeElement(serverPublicKey[:], "server public key"); err != nil {
		return nil, err
	}
	blinded, err := decodeElement(request, "blinded message")
	if err != nil {
		return nil, err
	}
	evaluated, err := evaluate(key, blinded)
	if err != nil {
		return nil, err
	}
	return concat(evaluated, serverPublicKey[:]), nil
}
