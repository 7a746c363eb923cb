package releaselog

import (
	"bytes"
	"fmt"

	"github.com/cofferhsm/coffer/protocol"
)

// IdentityKeys are the keys of a vault identity. An identity revocation
// names one bundle by its hash, but what it withdraws is the vault's keys:
// the same keys in any other bundle (another firmware, name or limit, the
// same fields signed again) are the same vault, and as revoked
// (RELEASES.md, "Revocation and rotation").
type IdentityKeys struct {
	Signing, AKE, HPKE []byte
}

// KeysOf reads the keys of a bundle from its body. Whose signature the
// bundle carries is not checked: a revoked key is revoked whoever signed
// the bundle that carries it.
func KeysOf(si *protocol.SignedIdentity) (*IdentityKeys, error) {
	var id protocol.Identity
	if err := protocol.Unmarshal(si.Body, &id); err != nil {
		return nil, fmt.Errorf("%w: identity body: %v", ErrMalformedEntry, err)
	}
	return &IdentityKeys{Signing: id.SigningKey, AKE: id.AKEKey, HPKE: id.HPKEKey}, nil
}

// Shared names the first of id's keys that is k's key of the same role
// ("signing", "AKE" or "HPKE"), or "" when id shares none of them.
func (k *IdentityKeys) Shared(id *protocol.Identity) string {
	for _, c := range []struct {
		role     string
		key, its []byte
	}{{"signing", k.Signing, id.SigningKey}, {"AKE", k.AKE, id.AKEKey}, {"HPKE", k.HPKE, id.HPKEKey}} {
		if len(c.key) > 0 && bytes.Equal(c.key, c.its) {
			return c.role
		}
	}
	return ""
}
