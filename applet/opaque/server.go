package opaque

import (
	"bytes"
	"crypto/hmac"
	"fmt"
	"io"
	"sync"

	"github.com/cloudflare/circl/group"
)

// ValidateKE1 is the cheap structural check the vault runs before it counts
// a guess: right length, and a blinded message and client keyshare that are
// canonical non-identity elements. It does no scalar multiplication and
// touches no key, so a KE1 that fails here costs the user no attempt.
// GenerateKE2 repeats the same checks.
func ValidateKE1(ke1 []byte) error {
	_, _, err := parseKE1(ke1)
	return err
}

// parseKE1 splits blinded_message || client_nonce || client_public_keyshare
// and decodes the two elements.
func parseKE1(ke1 []byte) (blinded, clientKeyshare group.Element, err error) {
	if len(ke1) != KE1Size {
		return nil, nil, malformed("KE1", len(ke1), KE1Size)
	}
	if blinded, err = decodeElement(ke1[:ElementSize], "KE1 blinded message"); err != nil {
		return nil, nil, err
	}
	if clientKeyshare, err = decodeElement(ke1[ElementSize+NonceSize:], "KE1 client keyshare"); err != nil {
		return nil, nil, err
	}
	return blinded, clientKeyshare, nil
}

// KE2Randomness is the server's randomness for one KE2, in the order RFC
// 9807 draws it. Reusing it across logins breaks the protocol; it exists so
// that GenerateKE2Deterministic can reproduce the RFC's test vectors.
type KE2Randomness struct {
	MaskingNonce       [NonceSize]byte
	ServerNonce        [NonceSize]byte
	ServerKeyshareSeed [SeedSize]byte
}

// GenerateKE2 answers a KE1 for the given record (RFC 9807 GenerateKE2 with
// the OPRF key passed in). It returns KE2 for the client and the state to
// check its KE3 with; the state holds the expected client MAC and the
// session key, lives only in memory, and is good for one Finish.
//
// credentialIdentifier does not enter the transcript (in RFC 9807 it only
// feeds the OPRF key derivation, which here the caller has done); the state
// keeps a copy so the caller can check that a KE3 is matched with the login
// it belongs to. rand supplies the masking nonce, the server nonce and the
// server keyshare seed, in that order.
//
// Every call evaluates the OPRF on key: the vault must have counted a guess
// (or be answering with a fake record) before calling it.
func GenerateKE2(rand io.Reader, keys ServerKeys, rec Record, key OPRFKey, credentialIdentifier []byte,
	ke1 []byte, ids Identities, context []byte) (ke2 []byte, st *ServerState, err error) {
	var r KE2Randomness
	defer wipe(r.MaskingNonce[:], r.ServerNonce[:], r.ServerKeyshareSeed[:])
	if rand == nil {
		return nil, nil, fmt.Errorf("%w: nil randomness source", ErrInvalidArgument)
	}
	for _, b := range [][]byte{r.MaskingNonce[:], r.ServerNonce[:], r.ServerKeyshareSeed[:]} {
		if _, err := io.ReadFull(rand, b); err != nil {
			return nil, nil, fmt.Errorf("%w: %v", ErrRandom, err)
		}
	}
	return GenerateKE2Deterministic(keys, rec, key, credentialIdentifier, ke1, ids, context, r)
}

// GenerateKE2Deterministic is GenerateKE2 with the server's randomness given
// explicitly. It is for test vectors only.
func GenerateKE2Deterministic(keys ServerKeys, rec Record, key OPRFKey, credentialIdentifier []byte,
	ke1 []byte, ids Identities, context []byte, r KE2Randomness) ([]byte, *ServerState, error) {
	if len(credentialIdentifier) == 0 {
		return nil, nil, fmt.Errorf("%w: empty credential identifier", ErrInvalidArgument)
	}
	ke2, ak, clientMAC, err := respond(keys, rec, key, ke1, ids, context, r)
	if err != nil {
		return nil, nil, err
	}
	defer ak.wipe()
	st := &ServerState{credentialIdentifier: bytes.Clone(credentialIdentifier)}
	copy(st.expectedClientMAC[:], clientMAC)
	copy(st.sessionKey[:], ak.sessionKey)
	wipe(clientMAC)
	return ke2, st, nil
}

// respond is the body of GenerateKE2: CreateCredentialResponse followed by
// AuthServerRespond (RFC 9807 sections 5.3.2 and 6.4.3). It returns the AKE
// keys too, so that the vector tests can check the intermediates.
func respond(keys ServerKeys, rec Record, key OPRFKey, ke1 []byte, ids Identities, context []byte,
	r KE2Randomness) (ke2 []byte, ak akeKeys, clientMAC []byte, err error) {
	blinded, clientKeyshare, err := parseKE1(ke1)
	if err != nil {
		return nil, akeKeys{}, nil, err
	}
	if err := checkContext(context); err != nil {
		return nil, akeKeys{}, nil, err
	}
	clientPublic, err := rec.clientPublicKey()
	if err != nil {
		return nil, akeKeys{}, nil, err
	}
	clientIdentity, serverIdentity, err := ids.resolve(rec.ClientPublicKey[:], keys.Public[:])
	if err != nil {
		return nil, akeKeys{}, nil, err
	}
	serverPrivate, err := decodeScalar(keys.Private[:], "server private key")
	if err != nil {
		return nil, akeKeys{}, nil, err
	}
	defer wipeScalar(serverPrivate)

	// CreateCredentialResponse.
	evaluated, err := evaluate(key, blinded)
	if err != nil {
		return nil, akeKeys{}, nil, err
	}
	masked := maskResponse(rec.MaskingKey[:], r.MaskingNonce[:], keys.Public[:], rec.Envelope[:])
	credentialResponse := concat(evaluated, r.MaskingNonce[:], masked)

	// AuthServerRespond.
	keyshareSecret, keyshare, err := deriveDiffieHellmanKeyPair(r.ServerKeyshareSeed[:])
	if err != nil {
		return nil, akeKeys{}, nil, err
	}
	defer wipeScalar(keyshareSecret)
	serverKeyshare := encodeElement(keyshare)
	pre := preamble(context, clientIdentity, ke1, serverIdentity, credentialResponse, r.ServerNonce[:], serverKeyshare)
	ikm := tripleDH(
		keyshareSecret, clientKeyshare, // dh1: ephemeral-ephemeral
		serverPrivate, clientKeyshare, // dh2: server static, client ephemeral
		keyshareSecret, clientPublic, // dh3: server ephemeral, client static
	)
	defer wipe(ikm)
	ak = deriveKeys(ikm, hash(pre))
	serverMAC, clientMAC := ak.macs(pre)
	ke2 = concat(credentialResponse, r.ServerNonce[:], serverKeyshare, serverMAC)
	return ke2, ak, clientMAC, nil
}

// maskResponse (and its inverse, the same XOR) hides server_public_key ||
// envelope under a pad only the holder of the masking key can rebuild:
// Expand(masking_key, masking_nonce || "CredentialResponsePad", Npk+Nn+Nm).
func maskResponse(maskingKey, maskingNonce, serverPublicKey, envelope []byte) []byte {
	pad := expand(maskingKey, concat(maskingNonce, []byte(labelCredentialPad)), maskedResponseSize)
	plain := concat(serverPublicKey, envelope)
	for i := range pad {
		pad[i] ^= plain[i]
	}
	return pad
}

// ServerState is what the server keeps between KE2 and KE3: the client MAC
// it expects and the session key it releases on a match. It must stay in
// memory only (never stored), and is good for one Finish; Discard erases it
// without a KE3 (expiry, shutdown). It is safe for concurrent use, so two
// racing KE3s cannot both succeed.
type ServerState struct {
	mu                   sync.Mutex
	used                 bool
	expectedClientMAC    [MACSize]byte
	sessionKey           [HashSize]byte
	credentialIdentifier []byte
}

// CredentialIdentifier returns the identifier GenerateKE2 was called with.
func (st *ServerState) CredentialIdentifier() []byte {
	if st == nil {
		return nil
	}
	return bytes.Clone(st.credentialIdentifier)
}

// Finish checks the client's KE3 (its MAC over the whole transcript) in
// constant time and, on a match, returns the session key. It is single use:
// whatever the outcome, the state's secrets are overwritten and later calls
// return ErrStateUsed. A wrong MAC returns ErrAuthentication, a wrong length
// ErrMalformed; neither says anything about the expected value.
func (st *ServerState) Finish(ke3 []byte) (sessionKey []byte, err error) {
	if st == nil {
		return nil, fmt.Errorf("%w: nil state", ErrStateUsed)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.used {
		return nil, ErrStateUsed
	}
	defer st.erase()
	if len(ke3) != KE3Size {
		return nil, malformed("KE3", len(ke3), KE3Size)
	}
	if !hmac.Equal(ke3, st.expectedClientMAC[:]) {
		return nil, ErrAuthentication
	}
	return bytes.Clone(st.sessionKey[:]), nil
}

// Clone returns an independent copy of the state, for tests that explore
// several futures of one login (the vault's executable model of its
// counting rules); each copy is good for one Finish of its own.
func (st *ServerState) Clone() *ServerState {
	st.mu.Lock()
	defer st.mu.Unlock()
	return &ServerState{used: st.used, expectedClientMAC: st.expectedClientMAC, sessionKey: st.sessionKey,
		credentialIdentifier: bytes.Clone(st.credentialIdentifier)}
}

// Discard erases the state without checking a KE3; later Finish calls
// return ErrStateUsed.
func (st *ServerState) Discard() {
	if st == nil {
		return
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	st.erase()
}

// erase overwrites the secrets and marks the state used. Callers hold mu.
func (st *ServerState) erase() {
	st.used = true
	wipe(st.expectedClientMAC[:], st.sessionKey[:])
}
