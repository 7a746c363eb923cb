//go:build amd64 || arm64

package opaque

import (
	"bytes"
	"testing"

	bytemare "github.com/bytemare/opaque"
)

// BenchmarkBytemareServerLogin times bytemare's server on the same login as
// BenchmarkServerLogin (same keys, record, OPRF key, KE1 and randomness, so
// the very same KE2 and KE3), including the parsing of KE1, record and KE3
// from bytes and the encoding of KE2, as our server does. Run both in one
// `go test -bench 'ServerLogin'` to get the ratio.
func BenchmarkBytemareServerLogin(b *testing.B) {
	fx := newLoginFixture(b)
	conf := bytemareConfig(fx.context, identityKSF)
	server := bytemareServer(b, conf, fx.keys, nil)
	oprfKey := bytemareScalar(b, fx.user.key[:])
	options := &bytemare.ServerOptions{
		ClientOPRFKey: oprfKey,
		MaskingNonce:  fx.randomness.MaskingNonce[:],
		AKE: &bytemare.AKEOptions{
			SecretKeyShareSeed: fx.randomness.ServerKeyshareSeed[:],
			Nonce:              fx.randomness.ServerNonce[:],
		},
	}
	recordBytes := fx.user.record.Bytes()
	once := func() []byte {
		ke1, err := server.Deserialize.KE1(fx.ke1)
		if err != nil {
			b.Fatal(err)
		}
		rec, err := server.Deserialize.RegistrationRecord(recordBytes)
		if err != nil {
			b.Fatal(err)
		}
		ke2, out, err := server.GenerateKE2(ke1, &bytemare.ClientRecord{
			RegistrationRecord:   rec,
			CredentialIdentifier: fx.user.id,
			ClientIdentity:       fx.ids.Client,
		}, options)
		if err != nil {
			b.Fatal(err)
		}
		ke2Bytes := ke2.Serialize()
		ke3, err := server.Deserialize.KE3(fx.ke3)
		if err != nil {
			b.Fatal(err)
		}
		if err := server.LoginFinish(ke3, out.ClientMAC); err != nil {
			b.Fatal(err)
		}
		return ke2Bytes
	}
	// Same work as ours: bytemare must produce our KE2 byte for byte.
	if !bytes.Equal(once(), fx.ke2) {
		b.Fatal("bytemare's KE2 differs from ours for the same inputs")
	}
	b.ReportAllocs()
	for b.Loop() {
		once()
	}
}
