package protocol

import (
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/hpke"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/chacha20poly1305"
)

// The registration channel (SPEC.md, "Registration (HPKE channel)"). The
// client's RegisterStart is HPKE-sealed to the vault; everything after it is
// sealed under keys derived, as Oblivious HTTP derives its response keys
// (RFC 9458, 4.4), from a secret exported from the HPKE context and a
// response nonce the vault draws afresh for every RegisterStart it answers.
// A host that replays a RegisterStart gets replies under unrelated keys and
// nonces, and can splice nothing from one run into another.

// Context strings of the registration channel.
const (
	hpkeInfoRegister = "coffer/v1 register"
	// exportRegister labels the HPKE export (RFC 9458 uses its media type).
	exportRegister = "coffer/v1 register response"

	expandStartReplyKey    = "coffer/v1 register start-reply key"
	expandStartReplyNonce  = "coffer/v1 register start-reply nonce"
	expandFinishKey        = "coffer/v1 register finish key"
	expandFinishNonce      = "coffer/v1 register finish nonce"
	expandFinishReplyKey   = "coffer/v1 register finish-reply key"
	expandFinishReplyNonce = "coffer/v1 register finish-reply nonce"
)

// The suite's sizes: Nk and Nn of ChaCha20-Poly1305, Nh of HKDF-SHA256.
const (
	aeadKeySize   = chacha20poly1305.KeySize   // Nk = 32
	aeadNonceSize = chacha20poly1305.NonceSize // Nn = 12
	// ResponseNonceSize is max(Nn, Nk), as RFC 9458 sizes its response
	// nonce: enough that the vault's random draws never repeat.
	ResponseNonceSize = max(aeadNonceSize, aeadKeySize)
)

// The registration channel's HPKE suite: DHKEM(X25519, HKDF-SHA256),
// HKDF-SHA256, ChaCha20-Poly1305 (RFC 9180 ids 0x0020, 0x0001, 0x0003). The
// response keys use the same KDF, HKDF-SHA256.
func hpkeSuite() (hpke.KEM, hpke.KDF, hpke.AEAD) {
	return hpke.DHKEM(ecdh.X25519()), hpke.HKDFSHA256(), hpke.ChaCha20Poly1305()
}

// HPKEKeyFromBytes makes a vault's X25519 HPKE key from 32 random bytes.
func HPKEKeyFromBytes(seed []byte) (hpke.PrivateKey, error) {
	kem, _, _ := hpkeSuite()
	return kem.NewPrivateKey(seed)
}

// RegistrationSecret is what both ends share once the HPKE context of a
// registration is set up: its enc and the secret exported from it. On its
// own it seals nothing; Keys turns it into the keys of one reply's run.
type RegistrationSecret struct {
	enc    []byte
	secret [aeadKeySize]byte
}

// Wipe overwrites the secret.
func (s *RegistrationSecret) Wipe() { clear(s.secret[:]) }

func newRegistrationSecret(enc []byte, export func(string, int) ([]byte, error)) (*RegistrationSecret, error) {
	b, err := export(exportRegister, aeadKeySize)
	if err != nil {
		return nil, err
	}
	defer clear(b)
	s := &RegistrationSecret{enc: append([]byte(nil), enc...)}
	copy(s.secret[:], b)
	return s, nil
}

// NewResponseNonce draws the response nonce of one RegisterStartReply. The
// vault draws one for every RegisterStart it answers, replays included.
func NewResponseNonce(random io.Reader) ([]byte, error) {
	n := make([]byte, ResponseNonceSize)
	if _, err := io.ReadFull(random, n); err != nil {
		return nil, err
	}
	return n, nil
}

// Keys derives the keys of the registration run that the vault's reply with
// responseNonce opened:
//
//	salt = enc ‖ response_nonce
//	prk  = HKDF-Extract-SHA256(salt, secret)
//	key, nonce of each message = HKDF-Expand-SHA256(prk, label, Nk or Nn)
func (s *RegistrationSecret) Keys(responseNonce []byte) (RegistrationKeys, error) {
	var keys RegistrationKeys
	if len(responseNonce) != ResponseNonceSize {
		return keys, fmt.Errorf("%w: response nonce of %d bytes", ErrMalformed, len(responseNonce))
	}
	salt := append(append([]byte(nil), s.enc...), responseNonce...)
	prk, err := hkdf.Extract(sha256.New, s.secret[:], salt)
	if err != nil {
		return keys, err
	}
	defer clear(prk)
	for _, k := range []struct {
		dst               *OneTimeKey
		keyInfo, nonceInf string
	}{
		{&keys.StartReply, expandStartReplyKey, expandStartReplyNonce},
		{&keys.Finish, expandFinishKey, expandFinishNonce},
		{&keys.FinishReply, expandFinishReplyKey, expandFinishReplyNonce},
	} {
		key, err := hkdf.Expand(sha256.New, prk, k.keyInfo, aeadKeySize)
		if err != nil {
			keys.Wipe()
			return keys, err
		}
		nonce, err := hkdf.Expand(sha256.New, prk, k.nonceInf, aeadNonceSize)
		if err != nil {
			clear(key)
			keys.Wipe()
			return keys, err
		}
		copy(k.dst.key[:], key)
		copy(k.dst.nonce[:], nonce)
		k.dst.ready = true
		clear(key)
		clear(nonce)
	}
	return keys, nil
}

// RegistrationKeys are the keys of one registration run, one per message
// after RegisterStart. Each seals or opens exactly one message.
type RegistrationKeys struct {
	StartReply  OneTimeKey // vault → client: the RegisterStartReply
	Finish      OneTimeKey // client → vault: the RegisterFinish
	FinishReply OneTimeKey // vault → client: the SealedReply with the receipt
}

// Wipe overwrites all three.
func (k *RegistrationKeys) Wipe() { k.StartReply.Wipe(); k.Finish.Wipe(); k.FinishReply.Wipe() }

// ErrKeyUsed is a one-time key asked to seal or open a second message: a
// bug, refused rather than repeat a nonce.
var ErrKeyUsed = errors.New("protocol: a one-time key was used twice")

// OneTimeKey is a ChaCha20-Poly1305 key and nonce for exactly one message.
// Sealing or opening consumes it: the key is wiped after one use, so that
// no key and nonce pair ever seals twice.
type OneTimeKey struct {
	key   ChannelKey
	nonce [aeadNonceSize]byte
	ready bool
}

// Wipe overwrites the key and nonce.
func (k *OneTimeKey) Wipe() {
	k.key.Wipe()
	clear(k.nonce[:])
	k.ready = false
}

// use returns the AEAD and nonce of a key not used before; the caller wipes
// the key once done.
func (k *OneTimeKey) use() (cipher.AEAD, []byte, error) {
	if !k.ready {
		return nil, nil, ErrKeyUsed
	}
	a, err := chacha20poly1305.New(k.key[:])
	if err != nil {
		panic(err) // the key size is fixed by the type
	}
	return a, append([]byte(nil), k.nonce[:]...), nil
}

// SealMessage encodes m and seals it with aad, consuming the key.
func (k *OneTimeKey) SealMessage(aad []byte, m Message) ([]byte, error) {
	aead, nonce, err := k.use()
	defer k.Wipe()
	if err != nil {
		return nil, err
	}
	b, err := Marshal(m)
	if err != nil {
		return nil, err
	}
	defer clear(b)
	return aead.Seal(nil, nonce, b, aad), nil
}

// OpenMessage opens ciphertext with aad and strictly decodes it into m,
// consuming the key. A ciphertext that does not authenticate is ErrOpen.
func (k *OneTimeKey) OpenMessage(aad, ciphertext []byte, m Message) error {
	aead, nonce, err := k.use()
	defer k.Wipe()
	if err != nil {
		return err
	}
	b, err := aead.Open(nil, nonce, ciphertext, aad)
	if err != nil {
		return ErrOpen
	}
	defer clear(b)
	return Unmarshal(b, m)
}

// SealRegistration is the client's half of opening a registration channel to
// the vault's HPKE public key. The secret it returns becomes the run's keys
// once the vault's reply names its response nonce.
func SealRegistration(vaultHPKEKey []byte, inner *RegisterStartInner) (enc, sealed []byte, secret *RegistrationSecret, err error) {
	plaintext, err := Marshal(inner)
	if err != nil {
		return nil, nil, nil, err
	}
	defer clear(plaintext)
	kem, kdf, aead := hpkeSuite()
	pk, err := kem.NewPublicKey(vaultHPKEKey)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("protocol: vault HPKE key: %w", err)
	}
	enc, sender, err := hpke.NewSender(pk, kdf, aead, []byte(hpkeInfoRegister))
	if err != nil {
		return nil, nil, nil, err
	}
	if sealed, err = sender.Seal(nil, plaintext); err != nil {
		return nil, nil, nil, err
	}
	if secret, err = newRegistrationSecret(enc, sender.Export); err != nil {
		return nil, nil, nil, err
	}
	return enc, sealed, secret, nil
}

// OpenRegistration is the vault's half: it opens a RegisterStart and returns
// the same secret. The vault then draws a response nonce for its reply.
func OpenRegistration(key hpke.PrivateKey, m *RegisterStart) (*RegisterStartInner, *RegistrationSecret, error) {
	_, kdf, aead := hpkeSuite()
	recipient, err := hpke.NewRecipient(m.Enc, key, kdf, aead, []byte(hpkeInfoRegister))
	if err != nil {
		return nil, nil, ErrOpen
	}
	plaintext, err := recipient.Open(nil, m.Sealed)
	if err != nil {
		return nil, nil, ErrOpen
	}
	defer clear(plaintext)
	var inner RegisterStartInner
	if err := Unmarshal(plaintext, &inner); err != nil {
		return nil, nil, err
	}
	if string(inner.UserID) != string(m.UserID) {
		return nil, nil, fmt.Errorf("%w: sealed user id differs from the routed one", ErrMalformed)
	}
	secret, err := newRegistrationSecret(m.Enc, recipient.Export)
	if err != nil {
		return nil, nil, err
	}
	return &inner, secret, nil
}
