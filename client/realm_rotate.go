package client

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"fmt"

	"github.com/cofferhsm/coffer/protocol/realmkey"
)

// anchorOf is the public anchor K derives for the set (5.6).
func anchorOf(k, setID []byte) (ed25519.PublicKey, error) {
	priv, err := realmkey.AnchorKey(k, setID)
	if err != nil {
		return nil, err
	}
	defer clear(priv)
	return priv.Public().(ed25519.PublicKey), nil
}

// RotateKey replaces K (REALMS.md 13.4): after recovering K with password
// (and finishing any unfinished change), it draws K', derives its anchor,
// and runs a change to a version W that wraps K' under the same password,
// whose manifest carries the old anchor's handover signature over the new
// anchor, so that every device that pinned the old anchor follows. Once W
// is committed the configuration pins the new anchor and K”s age
// recipient; the report carries the new set code. Backups made under K stay
// readable by whoever recovers the old K until they are deleted.
//
// W's resume blob is sealed under K' (under K, whoever learnt the old K —
// the reason to rotate — could open it and test the password offline), so
// a rotation cut before W is held by t realms is finished only by the
// device that still holds it in this run; later, W opens with the password
// once t realms hold it (--other-version).
func (s *RealmSet) RotateKey(ctx context.Context, password []byte) (*ChangeReport, *BackupKey, error) {
	pw, err := NormalizePassword(password)
	if err != nil {
		return nil, nil, err
	}
	defer clear(pw)
	_, op, err := s.recoverOpen(ctx, password)
	if err != nil {
		return nil, nil, err
	}
	defer op.wipe()
	fin, cur, err := s.finishUnfinished(ctx, op)
	if err != nil {
		return fin, nil, err
	}
	defer cur.wipe()
	next, err := NewBackupKey(s.random)
	if err != nil {
		return nil, nil, err
	}
	nk := next.Bytes()
	defer clear(nk)
	w, err := s.makeVersion(cur, pw, op.key, nil, versionPlan{newKey: nk})
	if err != nil {
		return nil, nil, err
	}
	defer w.wipe()
	rep, err := s.startChange(ctx, "rotate", cur, w, op.key)
	if err != nil {
		return rep, nil, err
	}
	if rep.CommitSent {
		if err := s.pinRotated(w.body.Anchor, next); err != nil {
			return rep, nil, err
		}
		rep.SetCode = s.rc.SetCode()
	}
	return rep, next, nil
}

// pinRotated pins the anchor of a version that handed over from the pinned
// one, once its key k (K') is known and derives exactly that anchor, and
// makes k's age recipient the one new backups are written to.
func (s *RealmSet) pinRotated(anchor []byte, k *BackupKey) error {
	kb := k.Bytes()
	defer clear(kb)
	priv, err := anchorOf(kb, s.rc.setID())
	if err != nil {
		return err
	}
	if !priv.Equal(ed25519.PublicKey(anchor)) {
		return fmt.Errorf("client: the new version's key does not derive its anchor: refused")
	}
	rec, err := k.AgeRecipient()
	if err != nil {
		return err
	}
	s.rc.Anchor, s.cfg.AgeRecipient = hex.EncodeToString(anchor), rec
	return nil
}
