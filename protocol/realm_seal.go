package protocol

import (
	"crypto/hkdf"
	"crypto/hpke"
	"crypto/sha256"
	"fmt"
	"io"

	"golang.org/x/crypto/chacha20poly1305"
)

// The realm channel (REALMS.md, 6.1 and 6.2): every request is HPKE-sealed
// to the realm's pinned key; every reply is sealed, as the registration
// channel's are (RFC 9458, 4.4), under keys derived from a secret exported
// from the request's HPKE context and a response nonce the realm draws
// afresh for every reply, replays included.
const (
	hpkeInfoRealmRequest  = "coffer/v1 realm request"
	exportRealmResponse   = "coffer/v1 realm response"
	exportRealmSession    = "coffer/v1 realm session"
	expandRealmReplyKey   = "coffer/v1 realm reply key"
	expandRealmReplyNonce = "coffer/v1 realm reply nonce"
)

// RealmSecret is what both ends of one realm request share: the request's
// enc, its hash, and two secrets exported from its HPKE context, one for the
// reply and one (X of REALMS.md 5.4) for a session the request may open.
type RealmSecret struct {
	Type        Type
	RequestHash []byte
	enc         []byte
	response    [aeadKeySize]byte
	session     [aeadKeySize]byte
}

// Wipe overwrites the secrets.
func (s *RealmSecret) Wipe() { clear(s.response[:]); clear(s.session[:]) }

// SessionExport is X: HPKE.Export(context, "coffer/v1 realm session", 32).
func (s *RealmSecret) SessionExport() []byte { return append([]byte(nil), s.session[:]...) }

func newRealmSecret(t Type, m *RealmRequest, export func(string, int) ([]byte, error)) (*RealmSecret, error) {
	encoded, err := Marshal(m)
	if err != nil {
		return nil, err
	}
	s := &RealmSecret{Type: t, RequestHash: RealmRequestHash(t, encoded), enc: append([]byte(nil), m.Enc...)}
	for _, e := range []struct {
		dst   []byte
		label string
	}{{s.response[:], exportRealmResponse}, {s.session[:], exportRealmSession}} {
		b, err := export(e.label, aeadKeySize)
		if err != nil {
			s.Wipe()
			return nil, err
		}
		copy(e.dst, b)
		clear(b)
	}
	return s, nil
}

func realmRequestAAD(t Type, userID []byte) []byte {
	return append([]byte{byte(t)}, userID...)
}

// SealRealmRequest seals body, with the user's account id at this realm and
// a fresh client nonce, to the realm's HPKE key as a request of type t.
func SealRealmRequest(realmHPKEKey []byte, t Type, userID, clientNonce []byte, body Message) (*RealmRequest, *RealmSecret, error) {
	if t < TypeRealmProbe || t > TypeRealmRegister {
		return nil, nil, fmt.Errorf("protocol: %s is not a sealed realm request", t)
	}
	b, err := Marshal(body)
	if err != nil {
		return nil, nil, err
	}
	defer clear(b)
	plaintext, err := Marshal(&RealmInner{UserID: userID, ClientNonce: clientNonce, Body: b})
	if err != nil {
		return nil, nil, err
	}
	defer clear(plaintext)
	kem, kdf, aead := hpkeSuite()
	pk, err := kem.NewPublicKey(realmHPKEKey)
	if err != nil {
		return nil, nil, fmt.Errorf("protocol: realm HPKE key: %w", err)
	}
	enc, sender, err := hpke.NewSender(pk, kdf, aead, []byte(hpkeInfoRealmRequest))
	if err != nil {
		return nil, nil, err
	}
	sealed, err := sender.Seal(realmRequestAAD(t, userID), plaintext)
	if err != nil {
		return nil, nil, err
	}
	m := &RealmRequest{UserID: append([]byte(nil), userID...), Enc: enc, Sealed: sealed}
	secret, err := newRealmSecret(t, m, sender.Export)
	if err != nil {
		return nil, nil, err
	}
	return m, secret, nil
}

// OpenRealmRequest is the realm's half: it opens m as a request of type t,
// checks that the sealed user id is the routed one, and decodes the body
// into body. A request that does not open is ErrOpen.
func OpenRealmRequest(key hpke.PrivateKey, t Type, m *RealmRequest, body Message) (*RealmInner, *RealmSecret, error) {
	_, kdf, aead := hpkeSuite()
	recipient, err := hpke.NewRecipient(m.Enc, key, kdf, aead, []byte(hpkeInfoRealmRequest))
	if err != nil {
		return nil, nil, ErrOpen
	}
	plaintext, err := recipient.Open(realmRequestAAD(t, m.UserID), m.Sealed)
	if err != nil {
		return nil, nil, ErrOpen
	}
	defer clear(plaintext)
	var inner RealmInner
	if err := Unmarshal(plaintext, &inner); err != nil {
		return nil, nil, err
	}
	if string(inner.UserID) != string(m.UserID) {
		return nil, nil, fmt.Errorf("%w: sealed user id differs from the routed one", ErrMalformed)
	}
	if err := Unmarshal(inner.Body, body); err != nil {
		return nil, nil, err
	}
	secret, err := newRealmSecret(t, m, recipient.Export)
	if err != nil {
		return nil, nil, err
	}
	inner.Body = nil
	return &inner, secret, nil
}

// replyKey derives the one (key, nonce) of the reply with responseNonce:
// prk = HKDF-Extract-SHA256(salt = enc ‖ response_nonce, secret).
func (s *RealmSecret) replyKey(responseNonce []byte) (*OneTimeKey, error) {
	if len(responseNonce) != ResponseNonceSize {
		return nil, fmt.Errorf("%w: response nonce of %d bytes", ErrMalformed, len(responseNonce))
	}
	salt := append(append([]byte(nil), s.enc...), responseNonce...)
	prk, err := hkdf.Extract(sha256.New, s.response[:], salt)
	if err != nil {
		return nil, err
	}
	defer clear(prk)
	key, err := hkdf.Expand(sha256.New, prk, expandRealmReplyKey, chacha20poly1305.KeySize)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	nonce, err := hkdf.Expand(sha256.New, prk, expandRealmReplyNonce, chacha20poly1305.NonceSize)
	if err != nil {
		return nil, err
	}
	k := &OneTimeKey{ready: true}
	copy(k.key[:], key)
	copy(k.nonce[:], nonce)
	return k, nil
}

func (s *RealmSecret) replyAAD() []byte { return append([]byte{byte(s.Type)}, s.RequestHash...) }

// SealReply seals inner as the reply to the request, under a response nonce
// drawn from random.
func (s *RealmSecret) SealReply(random io.Reader, inner Message) (*RealmReply, error) {
	nonce, err := NewResponseNonce(random)
	if err != nil {
		return nil, err
	}
	k, err := s.replyKey(nonce)
	if err != nil {
		return nil, err
	}
	sealed, err := k.SealMessage(s.replyAAD(), inner)
	if err != nil {
		return nil, err
	}
	return &RealmReply{Sealed: sealed, ResponseNonce: nonce}, nil
}

// OpenReply opens the reply to the request and strictly decodes it into
// inner. A reply that does not authenticate is ErrOpen.
func (s *RealmSecret) OpenReply(r *RealmReply, inner Message) error {
	k, err := s.replyKey(r.ResponseNonce)
	if err != nil {
		return err
	}
	return k.OpenMessage(s.replyAAD(), r.Sealed, inner)
}
