package opaque

import (
	"crypto/hmac"
	"fmt"
	"io"

	"github.com/cloudflare/circl/group"
	"github.com/cloudflare/circl/oprf"
)

// This file is a minimal OPAQUE-3DH client, for tests and 32-bit builds: it
// lets the vault's tests run end to end under qemu-arm, where bytemare does
// not build, and it checks the client half of the RFC vectors. The product's
// client uses github.com/bytemare/opaque. Its randomness comes from the
// caller's reader in RFC order (blind, then nonce, then keyshare seed), so
// a scripted reader reproduces the vectors.

// KeyStretch is the client's key-stretching function (RFC 9807's Stretch),
// applied to the OPRF output; nil means the identity function, as in the RFC
// vectors. It must match the stretch used at registration.
type KeyStretch func(password []byte) []byte

// ClientRegistration is the client's state between its registration request
// and the server's response.
type ClientRegistration struct {
	pw   blindedPassword
	done bool
}

// NewClientRegistration blinds the password and returns the registration
// request (blinded_message).
func NewClientRegistration(rand io.Reader, password []byte) (*ClientRegistration, []byte, error) {
	pw, blinded, err := blindPassword(rand, password)
	if err != nil {
		return nil, nil, err
	}
	return &ClientRegistration{pw: pw}, blinded, nil
}

// Finalize turns the server's response into the record to upload and the
// export key. rand supplies the envelope nonce. Single use.
func (c *ClientRegistration) Finalize(rand io.Reader, response []byte, ids Identities, stretch KeyStretch) (Record, []byte, error) {
	if c == nil || c.done {
		return Record{}, nil, ErrStateUsed
	}
	c.done = true
	defer c.erase()
	if len(response) != RegistrationResponseSize {
		return Record{}, nil, malformed("registration response", len(response), RegistrationResponseSize)
	}
	serverPublicKey := response[ElementSize:]
	if _, err := decodeElement(serverPublicKey, "server public key"); err != nil {
		return Record{}, nil, err
	}
	randomizedPassword, err := c.pw.finalize(response[:ElementSize], stretch)
	if err != nil {
		return Record{}, nil, err
	}
	defer wipe(randomizedPassword)
	nonce, err := readRandom(rand, NonceSize)
	if err != nil {
		return Record{}, nil, err
	}
	keys, err := deriveEnvelopeKeys(randomizedPassword, nonce)
	if err != nil {
		return Record{}, nil, err
	}
	defer keys.wipe()
	tag, err := keys.authTag(nonce, serverPublicKey, ids)
	if err != nil {
		return Record{}, nil, err
	}
	var rec Record
	copy(rec.ClientPublicKey[:], keys.clientPublic)
	maskingKey := expand(randomizedPassword, []byte(labelMaskingKey), HashSize)
	copy(rec.MaskingKey[:], maskingKey)
	wipe(maskingKey)
	copy(rec.Envelope[:], concat(nonce, tag))
	return rec, append([]byte(nil), keys.exportKey...), nil
}

func (c *ClientRegistration) erase() { c.pw.wipe() }

// ClientLogin is the client's state between KE1 and KE2.
type ClientLogin struct {
	pw             blindedPassword
	keyshareSecret group.Scalar
	ke1            []byte
	done           bool
}

// NewClientLogin starts a login and returns KE1. rand supplies the blind,
// the client nonce and the client keyshare seed, in that order.
func NewClientLogin(rand io.Reader, password []byte) (*ClientLogin, []byte, error) {
	pw, blinded, err := blindPassword(rand, password)
	if err != nil {
		return nil, nil, err
	}
	nonce, err := readRandom(rand, NonceSize)
	if err != nil {
		pw.wipe()
		return nil, nil, err
	}
	seed, err := readRandom(rand, SeedSize)
	if err != nil {
		pw.wipe()
		return nil, nil, err
	}
	defer wipe(seed)
	secret, keyshare, err := deriveDiffieHellmanKeyPair(seed)
	if err != nil {
		pw.wipe()
		return nil, nil, err
	}
	ke1 := concat(blinded, nonce, encodeElement(keyshare))
	return &ClientLogin{
		pw:             pw,
		keyshareSecret: secret,
		ke1:            ke1,
	}, append([]byte(nil), ke1...), nil
}

// Finish processes KE2: it opens the envelope, checks the server's MAC and
// returns KE3, the session key and the export key. A wrong password and a
// server that fails authentication give the same ErrAuthentication, so the
// client behaves alike in both cases. Single use.
func (c *ClientLogin) Finish(ke2 []byte, ids Identities, context []byte, stretch KeyStretch) (ke3, sessionKey, exportKey []byte, err error) {
	if c == nil || c.done {
		return nil, nil, nil, ErrStateUsed
	}
	c.done = true
	defer c.erase()
	if len(ke2) != KE2Size {
		return nil, nil, nil, malformed("KE2", len(ke2), KE2Size)
	}
	if err := checkContext(context); err != nil {
		return nil, nil, nil, err
	}
	credentialResponse := ke2[:credentialResponseSize]
	evaluated := credentialResponse[:ElementSize]
	maskingNonce := credentialResponse[ElementSize : ElementSize+NonceSize]
	masked := credentialResponse[ElementSize+NonceSize:]
	rest := ke2[credentialResponseSize:]
	serverNonce := rest[:NonceSize]
	serverKeyshareBytes := rest[NonceSize : NonceSize+ElementSize]
	serverMAC := rest[NonceSize+ElementSize:]
	serverKeyshare, err := decodeElement(serverKeyshareBytes, "KE2 server keyshare")
	if err != nil {
		return nil, nil, nil, err
	}

	randomizedPassword, err := c.pw.finalize(evaluated, stretch)
	if err != nil {
		return nil, nil, nil, err
	}
	defer wipe(randomizedPassword)

	// RecoverCredentials: unmask, then open the envelope.
	maskingKey := expand(randomizedPassword, []byte(labelMaskingKey), HashSize)
	defer wipe(maskingKey)
	plain := maskResponse(maskingKey, maskingNonce, masked[:ElementSize], masked[ElementSize:])
	serverPublicKeyBytes, envelope := plain[:ElementSize], plain[ElementSize:]
	serverPublicKey, err := decodeElement(serverPublicKeyBytes, "server public key")
	if err != nil {
		// A wrong password unmasks to garbage; report it as one.
		return nil, nil, nil, ErrAuthentication
	}
	envelopeNonce, tag := envelope[:NonceSize], envelope[NonceSize:]
	keys, err := deriveEnvelopeKeys(randomizedPassword, envelopeNonce)
	if err != nil {
		return nil, nil, nil, err
	}
	defer keys.wipe()
	expectedTag, err := keys.authTag(envelopeNonce, serverPublicKeyBytes, ids)
	if err != nil {
		return nil, nil, nil, err
	}
	if !hmac.Equal(tag, expectedTag) {
		return nil, nil, nil, ErrAuthentication
	}

	// AuthClientFinalize.
	clientIdentity, serverIdentity, err := ids.resolve(keys.clientPublic, serverPublicKeyBytes)
	if err != nil {
		return nil, nil, nil, err
	}
	pre := preamble(context, clientIdentity, c.ke1, serverIdentity, credentialResponse, serverNonce, serverKeyshareBytes)
	ikm := tripleDH(
		c.keyshareSecret, serverKeyshare, // dh1: ephemeral-ephemeral
		c.keyshareSecret, serverPublicKey, // dh2: client ephemeral, server static
		keys.clientPrivate, serverKeyshare, // dh3: client static, server ephemeral
	)
	defer wipe(ikm)
	ak := deriveKeys(ikm, hash(pre))
	defer ak.wipe()
	expectedServerMAC, clientMAC := ak.macs(pre)
	if !hmac.Equal(serverMAC, expectedServerMAC) {
		return nil, nil, nil, ErrAuthentication
	}
	return clientMAC, append([]byte(nil), ak.sessionKey...), append([]byte(nil), keys.exportKey...), nil
}

func (c *ClientLogin) erase() {
	c.pw.wipe()
	wipeScalar(c.keyshareSecret)
}

// oprfClient is the RFC 9497 base-mode client of the suite.
var oprfClient = oprf.NewClient(oprf.SuiteRistretto255)

// blindedPassword is the client's OPRF state: its own copy of the
// password, the blind, and circl's finalize data (which refers to that copy,
// so wiping the copy clears both).
type blindedPassword struct {
	password []byte
	blind    group.Scalar
	fin      *oprf.FinalizeData
}

// blindPassword is the OPRF's Blind with a blind drawn from rand; it returns
// the state and blinded_message.
func blindPassword(rand io.Reader, password []byte) (blindedPassword, []byte, error) {
	// The OPRF hashes the password with a two-byte length prefix.
	if len(password) > maxVectorLength {
		return blindedPassword{}, nil, fmt.Errorf("%w: password longer than %d bytes", ErrInvalidArgument, maxVectorLength)
	}
	blind, err := randomScalar(rand)
	if err != nil {
		return blindedPassword{}, nil, err
	}
	pw := blindedPassword{password: append([]byte(nil), password...), blind: blind}
	fin, req, err := oprfClient.DeterministicBlind([][]byte{pw.password}, []oprf.Blind{blind})
	if err != nil {
		pw.wipe()
		return blindedPassword{}, nil, fmt.Errorf("%w: blinding failed", ErrInvalidArgument)
	}
	pw.fin = fin
	return pw, encodeElement(req.Elements[0]), nil
}

// finalize is the OPRF's Finalize followed by the key stretch:
// randomized_password = Extract("", oprf_output || Stretch(oprf_output)).
func (pw *blindedPassword) finalize(evaluatedMessage []byte, stretch KeyStretch) ([]byte, error) {
	evaluated, err := decodeElement(evaluatedMessage, "evaluated message")
	if err != nil {
		return nil, err
	}
	out, err := oprfClient.Finalize(pw.fin, &oprf.Evaluation{Elements: []oprf.Evaluated{evaluated}})
	if err != nil {
		return nil, fmt.Errorf("%w: OPRF finalize failed", ErrInvalidElement)
	}
	oprfOutput := out[0]
	defer wipe(oprfOutput)
	return randomizedPassword(oprfOutput, stretch), nil
}

func (pw *blindedPassword) wipe() {
	wipe(pw.password)
	wipeScalar(pw.blind)
}

// randomizedPassword is Extract("", oprf_output || Stretch(oprf_output)).
func randomizedPassword(oprfOutput []byte, stretch KeyStretch) []byte {
	var stretched []byte
	if stretch == nil {
		stretched = append([]byte(nil), oprfOutput...)
	} else {
		stretched = stretch(append([]byte(nil), oprfOutput...))
	}
	ikm := concat(oprfOutput, stretched)
	defer wipe(ikm, stretched)
	return extract(ikm)
}
