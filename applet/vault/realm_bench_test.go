package vault

import (
	"context"
	"testing"

	"github.com/cofferhsm/coffer/protocol"
)

// BenchmarkRealmEvaluation is a realm's whole CPU cost of one evaluation
// through Handle: decoding, the HPKE open, the counted attempt and its
// commit (in RAM), the evaluation and its DLEQ proof, the signed attempt
// receipt and the sealed reply. Compare with BenchmarkVaultLogin in the
// same run (REALMS.md section 17 asks for the ratio). One sealed request is
// replayed; every replay is counted, so the record is reset, untimed, well
// before its limit.
func BenchmarkRealmEvaluation(b *testing.B) {
	ctx := context.Background()
	s := newRealmSet(b, 2, 2, "pw", protocol.DefaultLimit)
	h, r := s.vaults[0], s.realms[0]
	key := realmKey(r.UserID)
	fresh, _, err := h.store.Get(key)
	if err != nil {
		b.Fatal(err)
	}
	sent, err := r.Seal(protocol.TypeRealmEvaluate, &protocol.RealmEvaluate{VersionID: s.version.ID(), Blinded: randomBlinded(b)})
	if err != nil {
		b.Fatal(err)
	}
	evaluate := func() {
		var reply protocol.RealmEvaluateReply
		if err := r.Deliver(ctx, sent, &reply); err != nil {
			b.Fatal(err)
		}
		if len(reply.Handle) == 0 {
			b.Fatal("the record locked during the benchmark")
		}
		if tk, ok := h.v.realm.tickets.take(reply.Handle, h.v.opts.Now()); ok {
			tk.wipe()
		}
	}
	evaluate()
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		if n++; n%(protocol.DefaultLimit-2) == 0 {
			b.StopTimer()
			h.store.Put(key, fresh)
			h.store.Commit(ctx)
			b.StartTimer()
		}
		evaluate()
	}
}
