package opaque

import (
	"testing"
)

// TestRFCRealVectors replays RFC 9807's real test vectors through both
// halves: every output and every intermediate the RFC lists.
func TestRFCRealVectors(t *testing.T) {
	real, _ := loadRFCVectors(t)
	for _, v := range real {
		t.Run(v.Name, func(t *testing.T) {
			in, mid, out := v.Inputs, v.Intermediates, v.Outputs
			password := field(t, in, "password")
			credentialID := field(t, in, "credential_identifier")
			ids := Identities{Client: in["client_identity"], Server: in["server_identity"]}
			if v.Name[len("Real Test Vector ")] == '2' && (ids.Client == nil || ids.Server == nil) {
				t.Fatal("vector 2 must carry identities")
			}
			keys := ServerKeys{
				Private: array32(t, field(t, in, "server_private_key")),
				Public:  array32(t, field(t, in, "server_public_key")),
			}
			if err := keys.Validate(); err != nil {
				t.Fatalf("server keys: %v", err)
			}

			// Server: the OPRF key from the seed.
			oprfKey, err := DeriveOPRFKey(field(t, in, "oprf_seed"), credentialID)
			if err != nil {
				t.Fatal(err)
			}
			equalHex(t, "oprf_key", oprfKey[:], field(t, mid, "oprf_key"))

			// Registration.
			rr := script(field(t, in, "blind_registration"))
			reg, request, err := NewClientRegistration(rr, password)
			if err != nil {
				t.Fatal(err)
			}
			rr.done(t)
			equalHex(t, "registration_request", request, field(t, out, "registration_request"))
			response, err := CreateRegistrationResponse(request, keys.Public, oprfKey)
			if err != nil {
				t.Fatal(err)
			}
			equalHex(t, "registration_response", response, field(t, out, "registration_response"))

			// Client intermediates, from the same blind.
			rp, err := reg.pw.finalize(response[:ElementSize], nil)
			if err != nil {
				t.Fatal(err)
			}
			equalHex(t, "randomized_password", rp, field(t, mid, "randomized_password"))
			ek, err := deriveEnvelopeKeys(rp, field(t, in, "envelope_nonce"))
			if err != nil {
				t.Fatal(err)
			}
			equalHex(t, "auth_key", ek.authKey, field(t, mid, "auth_key"))
			equalHex(t, "client_public_key (envelope keys)", ek.clientPublic, field(t, mid, "client_public_key"))

			rr = script(field(t, in, "envelope_nonce"))
			rec, exportKey, err := reg.Finalize(rr, response, ids, nil)
			if err != nil {
				t.Fatal(err)
			}
			rr.done(t)
			equalHex(t, "registration_upload", rec.Bytes(), field(t, out, "registration_upload"))
			equalHex(t, "client_public_key", rec.ClientPublicKey[:], field(t, mid, "client_public_key"))
			equalHex(t, "masking_key", rec.MaskingKey[:], field(t, mid, "masking_key"))
			equalHex(t, "envelope", rec.Envelope[:], field(t, mid, "envelope"))
			equalHex(t, "export_key (registration)", exportKey, field(t, out, "export_key"))

			parsed, err := ParseRecord(field(t, out, "registration_upload"))
			if err != nil {
				t.Fatalf("ParseRecord: %v", err)
			}
			if parsed != rec {
				t.Error("ParseRecord(registration_upload) differs from the client's record")
			}

			// Login: KE1.
			lr := script(field(t, in, "blind_login"), field(t, in, "client_nonce"), field(t, in, "client_keyshare_seed"))
			login, ke1, err := NewClientLogin(lr, password)
			if err != nil {
				t.Fatal(err)
			}
			lr.done(t)
			equalHex(t, "KE1", ke1, field(t, out, "KE1"))
			if err := ValidateKE1(ke1); err != nil {
				t.Errorf("ValidateKE1(KE1): %v", err)
			}
			clientShare, err := DeriveServerKeys(field(t, in, "client_keyshare_seed"))
			if err != nil {
				t.Fatal(err)
			}
			equalHex(t, "client keyshare via DeriveServerKeys", clientShare.Public[:], ke1[KE1Size-ElementSize:])

			// Server: KE2, through the reader-driven entry point.
			randomness := KE2Randomness{
				MaskingNonce:       array32(t, field(t, in, "masking_nonce")),
				ServerNonce:        array32(t, field(t, in, "server_nonce")),
				ServerKeyshareSeed: array32(t, field(t, in, "server_keyshare_seed")),
			}
			sr := script(randomness.MaskingNonce[:], randomness.ServerNonce[:], randomness.ServerKeyshareSeed[:])
			context := v.Context
			ke2, st, err := GenerateKE2(sr, keys, parsed, oprfKey, credentialID, ke1, ids, context)
			if err != nil {
				t.Fatal(err)
			}
			sr.done(t)
			equalHex(t, "KE2", ke2, field(t, out, "KE2"))
			serverShare, err := DeriveServerKeys(randomness.ServerKeyshareSeed[:])
			if err != nil {
				t.Fatal(err)
			}
			equalHex(t, "server keyshare via DeriveServerKeys", serverShare.Public[:], ke2[credentialResponseSize+NonceSize:credentialResponseSize+NonceSize+ElementSize])

			// Server AKE intermediates.
			ke2again, ak, _, err := respond(keys, parsed, oprfKey, ke1, ids, context, randomness)
			if err != nil {
				t.Fatal(err)
			}
			equalHex(t, "KE2 (respond)", ke2again, ke2)
			equalHex(t, "handshake_secret", ak.handshakeSecret, field(t, mid, "handshake_secret"))
			equalHex(t, "server_mac_key", ak.serverMACKey, field(t, mid, "server_mac_key"))
			equalHex(t, "client_mac_key", ak.clientMACKey, field(t, mid, "client_mac_key"))
			equalHex(t, "session_key (server keys)", ak.sessionKey, field(t, out, "session_key"))

			// Client: KE3.
			ke3, clientSession, clientExport, err := login.Finish(ke2, ids, context, nil)
			if err != nil {
				t.Fatal(err)
			}
			equalHex(t, "KE3", ke3, field(t, out, "KE3"))
			equalHex(t, "session_key (client)", clientSession, field(t, out, "session_key"))
			equalHex(t, "export_key (login)", clientExport, field(t, out, "export_key"))

			// Server: Finish.
			if got := st.CredentialIdentifier(); string(got) != string(credentialID) {
				t.Errorf("state credential identifier %x, want %x", got, credentialID)
			}
			serverSession, err := st.Finish(ke3)
			if err != nil {
				t.Fatalf("Finish: %v", err)
			}
			equalHex(t, "session_key (server)", serverSession, field(t, out, "session_key"))
		})
	}
}

// TestRFCFakeVector checks the KE2 a server sends for an unknown user,
// given the fake record's inputs as the RFC lists them.
func TestRFCFakeVector(t *testing.T) {
	_, fake := loadRFCVectors(t)
	v := fake[0]
	in := v.Inputs
	keys := ServerKeys{
		Private: array32(t, field(t, in, "server_private_key")),
		Public:  array32(t, field(t, in, "server_public_key")),
	}
	if err := keys.Validate(); err != nil {
		t.Fatal(err)
	}
	// The RFC's fake client key pair is a real key pair.
	clientPair := ServerKeys{
		Private: array32(t, field(t, in, "client_private_key")),
		Public:  array32(t, field(t, in, "client_public_key")),
	}
	if err := clientPair.Validate(); err != nil {
		t.Fatalf("fake client key pair: %v", err)
	}
	var rec Record
	copy(rec.ClientPublicKey[:], field(t, in, "client_public_key"))
	maskingKey := field(t, in, "masking_key")
	if len(maskingKey) != HashSize {
		t.Fatalf("masking_key is %d bytes", len(maskingKey))
	}
	copy(rec.MaskingKey[:], maskingKey)
	// Envelope stays all zeros, as RFC 9807 section 10.9 prescribes.
	if _, err := ParseRecord(rec.Bytes()); err != nil {
		t.Fatalf("fake record does not parse: %v", err)
	}
	credentialID := field(t, in, "credential_identifier")
	oprfKey, err := DeriveOPRFKey(field(t, in, "oprf_seed"), credentialID)
	if err != nil {
		t.Fatal(err)
	}
	ids := Identities{Client: field(t, in, "client_identity"), Server: field(t, in, "server_identity")}
	r := script(field(t, in, "masking_nonce"), field(t, in, "server_nonce"), field(t, in, "server_keyshare_seed"))
	ke2, st, err := GenerateKE2(r, keys, rec, oprfKey, credentialID, field(t, in, "KE1"), ids, v.Context)
	if err != nil {
		t.Fatal(err)
	}
	r.done(t)
	equalHex(t, "fake KE2", ke2, field(t, v.Outputs, "KE2"))
	// Nobody can answer it: any KE3 fails, and the state is then spent.
	if _, err := st.Finish(make([]byte, KE3Size)); err == nil {
		t.Error("fake login accepted a KE3")
	}
}
