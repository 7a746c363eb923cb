package opaque

// Sizes of the suite ristretto255-SHA512 (RFC 9807 section 4 and 7 notation
// in brackets), and of the messages built from them.
const (
	ElementSize = 32 // Noe = Npk: an encoded ristretto255 element
	ScalarSize  = 32 // Nok = Nsk: an encoded ristretto255 scalar
	NonceSize   = 32 // Nn
	SeedSize    = 32 // Nseed: input to DeriveDiffieHellmanKeyPair
	HashSize    = 64 // Nh = Nx: SHA-512 output, also the KDF's PRK size
	MACSize     = 64 // Nm: HMAC-SHA512 output

	EnvelopeSize = NonceSize + MACSize // envelope_nonce || auth_tag

	RegistrationRequestSize  = ElementSize                           // blinded_message
	RegistrationResponseSize = ElementSize + ElementSize             // evaluated_message || server_public_key
	RecordSize               = ElementSize + HashSize + EnvelopeSize // client_public_key || masking_key || envelope

	// maskedResponseSize covers server_public_key || envelope, the part of
	// the credential response hidden under the masking key.
	maskedResponseSize     = ElementSize + EnvelopeSize
	credentialResponseSize = ElementSize + NonceSize + maskedResponseSize

	KE1Size = ElementSize + NonceSize + ElementSize                      // blinded_message || client_nonce || client_public_keyshare
	KE2Size = credentialResponseSize + NonceSize + ElementSize + MACSize // credential_response || server_nonce || server_public_keyshare || server_mac
	KE3Size = MACSize                                                    // client_mac

	// maxVectorLength bounds identities and the context, which the
	// transcript encodes with a two-byte length prefix.
	maxVectorLength = 1<<16 - 1
)

// Labels from RFC 9807. They are protocol constants: changing one breaks
// interoperability with every other implementation.
const (
	labelOPRFKey         = "OprfKey"
	labelDeriveKeyPair   = "OPAQUE-DeriveKeyPair"
	labelDeriveDHKeyPair = "OPAQUE-DeriveDiffieHellmanKeyPair"
	labelMaskingKey      = "MaskingKey"
	labelAuthKey         = "AuthKey"
	labelExportKey       = "ExportKey"
	labelPrivateKey      = "PrivateKey"
	labelCredentialPad   = "CredentialResponsePad"
	labelPreamble        = "OPAQUEv1-"
	labelExpandPrefix    = "OPAQUE-"
	labelHandshakeSecret = "HandshakeSecret"
	labelSessionKey      = "SessionKey"
	labelServerMAC       = "ServerMAC"
	labelClientMAC       = "ClientMAC"
)
