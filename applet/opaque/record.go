package opaque

import (
	"crypto/subtle"
	"fmt"

	"github.com/cloudflare/circl/group"
)

// Record is what registration leaves on the server (RFC 9807's
// RegistrationRecord): the client's public key, the key that masks the
// credential response, and the envelope (envelope_nonce || auth_tag) that
// only the right password opens.
type Record struct {
	ClientPublicKey [ElementSize]byte
	MaskingKey      [HashSize]byte
	Envelope        [EnvelopeSize]byte
}

// ParseRecord decodes client_public_key || masking_key || envelope, as the
// client uploads it. It rejects a wrong length, a client public key that is
// not a canonical non-identity element, and an all-zero masking key (which
// no client derives, but which a zeroed or truncated store would yield).
func ParseRecord(b []byte) (Record, error) {
	var r Record
	if len(b) != RecordSize {
		return r, malformed("record", len(b), RecordSize)
	}
	copy(r.ClientPublicKey[:], b[:ElementSize])
	copy(r.MaskingKey[:], b[ElementSize:ElementSize+HashSize])
	copy(r.Envelope[:], b[ElementSize+HashSize:])
	if _, err := r.clientPublicKey(); err != nil {
		return Record{}, err
	}
	return r, nil
}

// clientPublicKey checks the record's fields and returns its decoded
// client public key. GenerateKE2 runs it too, because a Record can be
// built without ParseRecord.
func (r *Record) clientPublicKey() (group.Element, error) {
	pk, err := decodeElement(r.ClientPublicKey[:], "record client public key")
	if err != nil {
		return nil, err
	}
	var zero [HashSize]byte
	if subtle.ConstantTimeCompare(r.MaskingKey[:], zero[:]) == 1 {
		return nil, fmt.Errorf("%w: record masking key is all zeros", ErrMalformed)
	}
	return pk, nil
}

// Bytes encodes the record as client_public_key || masking_key || envelope.
func (r Record) Bytes() []byte {
	return concat(r.ClientPublicKey[:], r.MaskingKey[:], r.Envelope[:])
}

// Labels that derive the parts of a fake record from the fake seed. They
// are Coffer's own, not RFC 9807's (the RFC leaves fake records to the
// server), and they end in different suffixes from each other and from
// "OprfKey", so id || label never collides across them.
const (
	labelFakeClientKey  = "CofferFakeClientKeySeed"
	labelFakeMaskingKey = "CofferFakeMaskingKey"
)

// FakeRecord returns the record and OPRF key the vault answers with for an
// unknown credential identifier (RFC 9807 section 10.9). Everything is
// derived from fakeSeed and the identifier, so repeated logins for the same
// unknown user see the same OPRF key, client public key and masking key,
// just as for a real user; a fresh random fake each time would let anyone
// tell the two apart by sending the same blinded element twice.
//
// As the RFC says, the client public key and masking key look random and the
// envelope is all zeros; masking hides the envelope on the wire, and the
// work to answer is the same as for a real record. No password opens it.
func FakeRecord(fakeSeed, credentialIdentifier []byte) (Record, OPRFKey, error) {
	key, err := DeriveOPRFKey(fakeSeed, credentialIdentifier)
	if err != nil {
		return Record{}, OPRFKey{}, err
	}
	var r Record
	keySeed := expand(fakeSeed, concat(credentialIdentifier, []byte(labelFakeClientKey)), SeedSize)
	defer wipe(keySeed)
	sk, pk, err := deriveDiffieHellmanKeyPair(keySeed)
	if err != nil {
		return Record{}, OPRFKey{}, err
	}
	// Nobody holds the fake client's private key.
	wipeScalar(sk)
	copy(r.ClientPublicKey[:], encodeElement(pk))
	maskingKey := expand(fakeSeed, concat(credentialIdentifier, []byte(labelFakeMaskingKey)), HashSize)
	copy(r.MaskingKey[:], maskingKey)
	wipe(maskingKey)
	return r, key, nil
}
