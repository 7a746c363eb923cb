//go:build ignore

// gen_opaque writes Coffer's OPAQUE test vectors: one file per case, in the
// format of protocol/testdata/vectors (README.md beside this file).
//
// It is independent of the code under test: every message, key and outcome
// comes from github.com/bytemare/opaque (the implementation the product's
// client uses) with Coffer's configuration (protocol/SPEC.md, "OPAQUE":
// ristretto255-SHA512, context "coffer/v1", client identity = user id,
// server identity = the server public key, a per-registration OPRF key, and
// Argon2id t=3 m=64 MiB p=4 as the key stretch, or the identity stretch for
// the fast cases) and fixed randomness. It does not import applet/opaque or
// applet/vault. TestBytemareVectors checks applet/opaque (built on circl)
// against the files. Run from this folder:
//
//	go run gen_opaque.go
//
// It removes the case folders, writes every case again and writes SHA256SUMS,
// which the test checks so that an edited case fails it.
package main

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/bytemare/ecc"
	"github.com/bytemare/ksf"
	bytemare "github.com/bytemare/opaque"
)

var context = []byte("coffer/v1")

// seq returns n bytes counting up from start.
func seq(n int, start byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = start + byte(i)
	}
	return b
}

// scalarBytes is a fixed canonical scalar: seq with the top byte small
// enough that the value is below the group order (about 2^252), and with the
// top three bits clear, so that a sampler that masks them takes it as is.
func scalarBytes(start byte) []byte {
	b := seq(32, start)
	b[31] &= 0x0f
	return b
}

func scalar(b []byte) *ecc.Scalar {
	s := ecc.Ristretto255Sha512.NewScalar()
	if err := s.Decode(b); err != nil {
		log.Fatal(err)
	}
	return s
}

func flip(b []byte, i int) []byte {
	b = bytes.Clone(b)
	b[i] ^= 1
	return b
}

func conf(stretch ksf.Identifier) *bytemare.Configuration {
	return &bytemare.Configuration{
		OPRF: bytemare.RistrettoSha512, AKE: bytemare.RistrettoSha512, KSF: stretch,
		KDF: crypto.SHA512, MAC: crypto.SHA512, Hash: crypto.SHA512, Context: context,
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		log.Fatal(err)
	}
	return v
}

// header is one "name: value" line; byte values go out in hex.
type header struct {
	name  string
	value any
}

func h(name string, value any) header { return header{name, value} }

var cases = map[string]string{}

func writeCase(path, expect string, data []byte, comment string, headers ...header) {
	if _, dup := cases[path]; dup {
		log.Fatalf("%s twice", path)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "expect: %s\n", expect)
	for _, hd := range headers {
		switch v := hd.value.(type) {
		case []byte:
			fmt.Fprintf(&b, "%s: %x\n", hd.name, v)
		default:
			fmt.Fprintf(&b, "%s: %v\n", hd.name, v)
		}
	}
	fmt.Fprintf(&b, "comment: %s\n\n", comment)
	x := hex.EncodeToString(data)
	for len(x) > 64 {
		b.WriteString(x[:64] + "\n")
		x = x[64:]
	}
	if x != "" {
		b.WriteString(x + "\n")
	}
	cases[path] = b.String()
}

// run is one registration and one login under fixed randomness.
type run struct {
	name, ksfName string
	stretch       ksf.Identifier
	password      []byte
	userID        []byte
	serverPriv    []byte
	serverPub     []byte
	oprfKey       []byte
	regBlind      []byte
	envelopeNonce []byte
	loginBlind    []byte
	clientNonce   []byte
	clientSeed    []byte
	maskingNonce  []byte
	serverNonce   []byte
	serverSeed    []byte

	request, response, record, exportKey []byte
	ke1, ke2, ke3, sessionKey            []byte
}

func newRun(name, ksfName string, stretch ksf.Identifier, start byte) *run {
	r := &run{
		name: name, ksfName: ksfName, stretch: stretch,
		password: []byte("correct horse battery staple"), userID: []byte("alice"),
		serverPriv: scalarBytes(start), oprfKey: scalarBytes(start + 0x20),
		regBlind: scalarBytes(start + 0x40), envelopeNonce: seq(32, start+0x60),
		loginBlind: scalarBytes(start + 0x80), clientNonce: seq(32, start+0xa0), clientSeed: seq(32, start+0xc0),
		maskingNonce: seq(32, start+0xe0), serverNonce: seq(32, start+0x10), serverSeed: seq(32, start+0x30),
	}
	r.serverPub = ecc.Ristretto255Sha512.Base().Multiply(scalar(r.serverPriv)).Encode()
	c := conf(stretch)

	server := must(bytemare.NewServer(c))
	if err := server.SetKeyMaterial(&bytemare.ServerKeyMaterial{
		PrivateKey: scalar(r.serverPriv), PublicKeyBytes: r.serverPub,
	}); err != nil {
		log.Fatal(err)
	}
	client := must(bytemare.NewClient(c))
	req := must(client.RegistrationInit(r.password, &bytemare.ClientOptions{OPRFBlind: scalar(r.regBlind)}))
	resp := must(server.RegistrationResponse(req, r.userID, scalar(r.oprfKey)))
	rec, exportKey, err := client.RegistrationFinalize(resp, r.userID, nil,
		&bytemare.ClientOptions{RegistrationEnvelopeNonce: r.envelopeNonce})
	if err != nil {
		log.Fatal(err)
	}
	r.request, r.response, r.record, r.exportKey = req.Serialize(), resp.Serialize(), rec.Serialize(), exportKey

	client = must(bytemare.NewClient(c))
	ke1 := must(client.GenerateKE1(r.password, &bytemare.ClientOptions{OPRFBlind: scalar(r.loginBlind),
		AKE: &bytemare.AKEOptions{SecretKeyShareSeed: r.clientSeed, Nonce: r.clientNonce}}))
	ke2, out, err := server.GenerateKE2(ke1, &bytemare.ClientRecord{
		RegistrationRecord: rec, CredentialIdentifier: r.userID, ClientIdentity: r.userID,
	}, &bytemare.ServerOptions{ClientOPRFKey: scalar(r.oprfKey), MaskingNonce: r.maskingNonce,
		AKE: &bytemare.AKEOptions{SecretKeyShareSeed: r.serverSeed, Nonce: r.serverNonce}})
	if err != nil {
		log.Fatal(err)
	}
	ke3, session, exportAgain, err := client.GenerateKE3(ke2, r.userID, nil)
	if err != nil {
		log.Fatal(err)
	}
	if err := server.LoginFinish(ke3, out.ClientMAC); err != nil {
		log.Fatal(err)
	}
	if !bytes.Equal(session, out.SessionSecret) || !bytes.Equal(exportAgain, exportKey) {
		log.Fatal("bytemare's two ends disagree")
	}
	r.ke1, r.ke2, r.ke3, r.sessionKey = ke1.Serialize(), ke2.Serialize(), ke3.Serialize(), session
	return r
}

// The inputs each step needs.
func (r *run) serverHeaders(userID, ctx, oprfKey []byte) []header {
	return []header{h("server-private-key", r.serverPriv), h("server-public-key", r.serverPub),
		h("oprf-key", oprfKey), h("record", r.record), h("user-id", userID), h("context", ctx),
		h("masking-nonce", r.maskingNonce), h("server-nonce", r.serverNonce), h("server-keyshare-seed", r.serverSeed)}
}

func (r *run) clientHeaders(password []byte, ksfName string) []header {
	return []header{h("password", password), h("user-id", r.userID), h("context", context), h("ksf", ksfName),
		h("blind", r.loginBlind), h("client-nonce", r.clientNonce), h("client-keyshare-seed", r.clientSeed)}
}

func (r *run) write() {
	n := r.name
	writeCase("registration/"+n+"-response", "success", r.request,
		"The server's registration response to bytemare's request, with a per-registration OPRF key.",
		h("step", "registration-response"), h("server-public-key", r.serverPub), h("oprf-key", r.oprfKey),
		h("registration-response", r.response))
	writeCase("registration/"+n+"-finalize", "success", r.response,
		"The client's record and export key from the response (bytemare's client, fixed blind and envelope nonce).",
		h("step", "registration-finalize"), h("password", r.password), h("user-id", r.userID), h("ksf", r.ksfName),
		h("blind", r.regBlind), h("envelope-nonce", r.envelopeNonce), h("record", r.record), h("export-key", r.exportKey))
	writeCase("login/"+n+"-ke1", "success", r.ke1,
		"KE1 from the password, the blind, the client nonce and the client keyshare seed.",
		h("step", "ke1"), h("password", r.password), h("blind", r.loginBlind),
		h("client-nonce", r.clientNonce), h("client-keyshare-seed", r.clientSeed))
	writeCase("login/"+n+"-ke2", "success", r.ke1, "The server's KE2 to bytemare's KE1 under fixed randomness.",
		append([]header{h("step", "ke2"), h("ke2", r.ke2)}, r.serverHeaders(r.userID, context, r.oprfKey)...)...)
	writeCase("login/"+n+"-ke3", "success", r.ke2,
		"The client's KE3, session key and export key from bytemare's KE2.",
		append(append([]header{h("step", "ke3")}, r.clientHeaders(r.password, r.ksfName)...),
			h("ke3", r.ke3), h("session-key", r.sessionKey), h("export-key", r.exportKey))...)
	writeCase("login/"+n+"-finish", "success", r.ke3, "The server accepts bytemare's KE3: the session key.",
		append([]header{h("step", "finish"), h("ke1", r.ke1), h("session-key", r.sessionKey)},
			r.serverHeaders(r.userID, context, r.oprfKey)...)...)
}

func main() {
	fast := newRun("identity-ksf", "identity", ksf.Identifier(0), 0x01)
	slow := newRun("argon2id", "argon2id", ksf.Argon2id, 0x05)
	fast.write()
	slow.write()
	r := fast

	finish := func(name string, ke3 []byte, comment string, userID, ctx, oprfKey []byte) {
		writeCase("login/"+name, "authentication", ke3, comment,
			append([]header{h("step", "finish"), h("ke1", r.ke1)}, r.serverHeaders(userID, ctx, oprfKey)...)...)
	}
	finish("finish-mac-flipped", flip(r.ke3, 0), "bytemare's KE3 with its first MAC byte flipped.", r.userID, context, r.oprfKey)
	finish("finish-random-ke3", seq(64, 0x99),
		"The random KE3 a client sends when its envelope does not open (a wrong password).", r.userID, context, r.oprfKey)
	finish("finish-other-context", r.ke3, "The server uses context coffer/v0; the client used coffer/v1.",
		r.userID, []byte("coffer/v0"), r.oprfKey)
	finish("finish-other-client-identity", r.ke3, "The server binds the user id bob; the client was alice.",
		[]byte("bob"), context, r.oprfKey)
	finish("finish-other-oprf-key", r.ke3, "The server evaluates another OPRF key than the record's.",
		r.userID, context, scalarBytes(0x77))

	ke3 := func(name string, ke2 []byte, comment string, password []byte, ksfName string, rr *run) {
		writeCase("login/"+name, "authentication", ke2, comment,
			append([]header{h("step", "ke3")}, rr.clientHeaders(password, ksfName)...)...)
	}
	ke3("ke3-wrong-password", r.ke2, "The client logs in with a wrong password: the envelope does not open.",
		[]byte("correct horse battery stapler"), "identity", r)
	ke3("ke3-server-mac-flipped", flip(r.ke2, len(r.ke2)-1), "KE2's last server MAC byte flipped.",
		r.password, "identity", r)
	ke3("ke3-envelope-flipped", flip(r.ke2, 32+32+32+10), "A byte of the masked envelope flipped.",
		r.password, "identity", r)
	ke3("ke3-server-nonce-flipped", flip(r.ke2, 192), "KE2's server nonce altered: the server MAC no longer matches.",
		r.password, "identity", r)
	ke3("ke3-wrong-ksf", slow.ke2, "The Argon2id run's KE2 opened with the identity stretch.",
		slow.password, "identity", slow)

	ke2 := func(name string, ke1 []byte, comment string) {
		writeCase("login/"+name, "malformed", ke1, comment,
			append([]header{h("step", "ke2")}, r.serverHeaders(r.userID, context, r.oprfKey)...)...)
	}
	ke2("ke2-identity-blinded", append(make([]byte, 32), r.ke1[32:]...), "KE1's blinded element is the identity element.")
	ke2("ke2-noncanonical-blinded", append(bytes.Repeat([]byte{0xff}, 32), r.ke1[32:]...),
		"KE1's blinded element is not a canonical encoding.")
	ke2("ke2-identity-keyshare", append(bytes.Clone(r.ke1[:64]), make([]byte, 32)...),
		"KE1's client keyshare is the identity element.")
	ke2("ke2-short-ke1", r.ke1[:95], "KE1 of 95 bytes.")

	writeCase("registration/response-identity-blinded", "malformed", make([]byte, 32),
		"A registration request that is the identity element.",
		h("step", "registration-response"), h("server-public-key", r.serverPub), h("oprf-key", r.oprfKey))
	writeCase("registration/response-short-request", "malformed", r.request[:31], "A registration request of 31 bytes.",
		h("step", "registration-response"), h("server-public-key", r.serverPub), h("oprf-key", r.oprfKey))
	writeCase("registration/finalize-identity-server-key", "malformed", append(bytes.Clone(r.response[:32]), make([]byte, 32)...),
		"A registration response whose server public key is the identity element.",
		h("step", "registration-finalize"), h("password", r.password), h("user-id", r.userID), h("ksf", "identity"),
		h("blind", r.regBlind), h("envelope-nonce", r.envelopeNonce))

	write()
}

func write() {
	for _, g := range []string{"registration", "login"} {
		os.RemoveAll(g)
		if err := os.Mkdir(g, 0o755); err != nil {
			log.Fatal(err)
		}
	}
	paths := make([]string, 0, len(cases))
	for p := range cases {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var sums strings.Builder
	counts := map[string]int{}
	for _, p := range paths {
		if err := os.WriteFile(filepath.FromSlash(p), []byte(cases[p]), 0o644); err != nil {
			log.Fatal(err)
		}
		sum := sha256.Sum256([]byte(cases[p]))
		fmt.Fprintf(&sums, "%x  %s\n", sum, p)
		counts[strings.TrimPrefix(strings.SplitN(cases[p], "\n", 2)[0], "expect: ")]++
	}
	if err := os.WriteFile("SHA256SUMS", []byte(sums.String()), 0o644); err != nil {
		log.Fatal(err)
	}
	fmt.Fprintf(os.Stderr, "%d cases: %v\n", len(paths), counts)
}
