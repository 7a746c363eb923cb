package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
)

// errCut is what the client sees once it has been cut.
var errCut = errors.New("cut: the client died here")

// cutTransport lets the first k requests through; the reply to the k-th is
// lost and every later request fails: a client killed after its k-th
// message. k < 0 never cuts; sent counts what went out.
type cutTransport struct {
	mu   sync.Mutex
	k    int
	sent int
	cut  bool
}

func (c *cutTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	c.mu.Lock()
	if c.k >= 0 && c.sent >= c.k {
		c.cut = true
		c.mu.Unlock()
		return nil, errCut
	}
	c.sent++
	last := c.k >= 0 && c.sent == c.k
	c.mu.Unlock()
	resp, err := http.DefaultTransport.RoundTrip(req)
	if last {
		if err == nil {
			resp.Body.Close()
		}
		c.mu.Lock()
		c.cut = true
		c.mu.Unlock()
		return nil, errCut
	}
	return resp, err
}

// device is one of the user's devices: its configuration as last saved.
// A run that is cut leaves only what it checkpointed.
type device struct {
	saved []byte
}

func newDevice(t *testing.T, cfg *Config) *device {
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &device{saved: b}
}

func (d *device) config(t testing.TB) *Config {
	var c Config
	if err := json.Unmarshal(d.saved, &c); err != nil {
		t.Fatal(err)
	}
	return &c
}

// run opens the device's set with a transport cut after k requests, runs
// f, and saves the configuration as the CLI would: at every checkpoint, and
// at the end only if the run was not cut.
func (d *device) run(t testing.TB, f *realmFixture, k int, force bool, do func(s *RealmSet) error) (*cutTransport, error) {
	t.Helper()
	cfg := d.config(t)
	tr := &cutTransport{k: k}
	opts := f.opts
	opts.HTTPClient = &http.Client{Transport: tr}
	opts.Force = force
	save := func() error {
		b, err := json.Marshal(cfg)
		if err != nil {
			return err
		}
		tr.mu.Lock()
		cut := tr.cut
		tr.mu.Unlock()
		if !cut {
			d.saved = b
		}
		return nil
	}
	opts.Checkpoint = save
	s, err := OpenRealmSet(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	err = do(s)
	save()
	return tr, err
}

// recovers says whether the device, as saved, recovers k with one of the
// passwords the user knows, trying each on the version it would choose and
// on the other one, without carrying anything forward.
func (f *realmFixture) recovers(t testing.TB, d *device, k *BackupKey, passwords ...string) (string, error) {
	t.Helper()
	var errs []error
	for _, other := range []bool{false, true} {
		for _, pw := range passwords {
			opts := f.opts
			opts.noFinish, opts.OtherVersion = true, other
			s, err := OpenRealmSet(d.config(t), opts)
			if err != nil {
				t.Fatal(err)
			}
			rec, err := s.Recover(context.Background(), []byte(pw))
			if err == nil {
				if !rec.Key.Equal(k) {
					t.Fatalf("password %q recovered another key", pw)
				}
				return pw, nil
			}
			errs = append(errs, fmt.Errorf("%s (other version %v): %w", pw, other, err))
		}
	}
	return "", errors.Join(errs...)
}

// tolerant checks the claim of REALMS.md 10 at this instant: with any one
// realm removed, some password the user knows still recovers K.
func (f *realmFixture) tolerant(t *testing.T, d *device, k *BackupKey, when string, passwords ...string) {
	t.Helper()
	for _, r := range f.realms {
		r.dev.setDown(true)
		if _, err := f.recovers(t, d, k, passwords...); err != nil {
			t.Fatalf("%s, with realm %s removed: no password recovers the key: %v", when, r.name, err)
		}
		r.dev.setDown(false)
	}
}

func (f *realmFixture) allUp() {
	for _, r := range f.realms {
		r.dev.setDown(false)
	}
}

func (f *realmFixture) down(mask int) string {
	s := ""
	for i, r := range f.realms {
		r.dev.setDown(mask&(1<<i) != 0)
		if mask&(1<<i) != 0 {
			s += r.name
		}
	}
	if s == "" {
		return "none"
	}
	return s
}

// finished checks the end state a finished change must reach: the new
// password recovers with any one realm removed, every realm holds exactly
// the device's version, committed, and the device holds no change.
func (f *realmFixture) finished(t testing.TB, d *device, k *BackupKey, when string) {
	t.Helper()
	for _, r := range f.realms {
		r.dev.setDown(true)
		if pw, err := f.recovers(t, d, k, "new"); err != nil || pw != "new" {
			t.Fatalf("%s, with realm %s removed: the new password does not recover: %v", when, r.name, err)
		}
		r.dev.setDown(false)
	}
	cfg := d.config(t)
	if cfg.Realms.Change != nil {
		t.Fatalf("%s: the device still holds a change: %+v", when, cfg.Realms.Change)
	}
	opts := f.opts
	s, err := OpenRealmSet(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.Probe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range st.Realms {
		held := 0
		for _, v := range r.Versions {
			if v.Status == 0 {
				continue
			}
			held++
			if v.Status != 2 || fmt.Sprintf("%x", v.ManifestHash) != cfg.Realms.Version.ManifestHash {
				t.Fatalf("%s: realm %s holds %+v besides the new version", when, r.Name, v)
			}
		}
		if held != 1 {
			t.Fatalf("%s: realm %s holds %d versions", when, r.Name, held)
		}
	}
}

// tryPasswords runs do with each password the user knows, on the version
// the device chooses and then on the other, until one is not a wrong
// password.
func (d *device) tryPasswords(_ *testing.T, f *realmFixture, do func(s *RealmSet, pw []byte) error) error {
	var last error
	for _, other := range []bool{false, true} {
		for _, pw := range []string{"old", "new"} {
			g := *f
			g.opts.OtherVersion = other
			_, err := d.run(f.t, &g, -1, false, func(s *RealmSet) error { return do(s, []byte(pw)) })
			var wp *WrongPasswordError
			if !errors.As(err, &wp) {
				return err
			}
			last = err
		}
	}
	return last
}

// cutScenario registers "old" at 2 of 3 realms, runs op with the realms of
// mask down and the client cut after k messages, checks the tolerance, then
// resumes from the same device or a second one with every realm up, checks
// again, and finishes: the end state must be the change done everywhere.
func cutScenario(t *testing.T, mask, k int, second bool, op func(s *RealmSet) error, resume func(d *device, f *realmFixture) error, final func(f *realmFixture, d *device, key *BackupKey, when string)) int {
	f := newRealmFixture(t, 2, 3, realmOptions{})
	key := f.register("old", 20)
	pre, dev := newDevice(t, f.cfg), newDevice(t, f.cfg)
	downs := f.down(mask)
	tr, _ := dev.run(t, f, k, false, op)
	f.allUp()
	when := fmt.Sprintf("realms down %s, cut after %d messages", downs, k)
	f.tolerant(t, dev, key, when, "old", "new")
	d := dev
	if second {
		d, when = pre, when+", resumed on a second device"
	} else {
		when += ", resumed on the same device"
	}
	if err := resume(d, f); err != nil {
		t.Logf("%s: resume: %v", when, err)
	}
	f.tolerant(t, d, key, when, "old", "new")
	final(f, d, key, when)
	return tr.sent
}

func changeOp(s *RealmSet) error {
	_, err := s.ChangePassword(context.Background(), []byte("old"), []byte("new"))
	return err
}

// resumeChange: the same device runs `coffer password change --resume`;
// a second device (configured before the change) just recovers, which
// carries an unfinished change forward (C6).
func resumeChange(second bool) func(d *device, f *realmFixture) error {
	return func(d *device, f *realmFixture) error {
		return d.tryPasswords(nil, f, func(s *RealmSet, pw []byte) error {
			if second {
				rec, err := s.Recover(context.Background(), pw)
				if err == nil && rec.ChangeErr != nil {
					return rec.ChangeErr
				}
				return err
			}
			_, err := s.ChangePassword(context.Background(), pw, nil)
			return err
		})
	}
}

// finishChange: if the change never began (cut before W existed), the user
// runs it again; then the change must be done everywhere.
func finishChange(f *realmFixture, d *device, key *BackupKey, when string) {
	t := f.t
	if _, err := f.recovers(t, d, key, "new"); err != nil {
		if _, err := d.run(t, f, -1, false, changeOp); err != nil {
			t.Fatalf("%s: the change run again: %v", when, err)
		}
	}
	f.finished(t, d, key, when)
}

// TestChangeCutAtEveryStep is REALMS.md 17's test of the claim of section
// 10: a password change cut after every one of its messages, with each
// subset of the realms down, never leaves the user without a password that
// recovers the key with any one realm removed, and resuming — on the same
// device or on another — finishes the change everywhere.
func TestChangeCutAtEveryStep(t *testing.T) {
	for mask := range 8 {
		t.Run(fmt.Sprintf("down=%03b", mask), func(t *testing.T) {
			t.Parallel()
			// How many messages the uncut change sends with these realms down.
			total := cutScenario(t, mask, -1, false, changeOp, resumeChange(false), finishChange)
			for k := 1; k <= total; k++ {
				if testing.Short() && k%5 != 0 {
					continue // -short: every fifth message
				}
				for _, second := range []bool{false, true} {
					cutScenario(t, mask, k, second, changeOp, resumeChange(second), finishChange)
				}
			}
		})
	}
}

func deleteOp(s *RealmSet) error {
	_, err := s.Delete(context.Background(), []byte("old"))
	return err
}

// liveRecords counts the realms that answer with a live record.
func (f *realmFixture) liveRecords(t *testing.T) int {
	n := 0
	for _, vs := range f.versionsAt(t) {
		if len(vs) > 0 {
			n++
		}
	}
	return n
}

// TestDeleteCutAtEveryStep: a delete cut after every message, with each
// subset of realms down. After the cut the key either still recovers with
// any one realm removed, or the device has recorded the delete and fewer
// than t realms hold it (complete against the servers' operators). Resumed
// on the same device or a second one with every realm up, the delete ends
// erased everywhere whenever t realms still held the key, and otherwise the
// report names the realms that may still hold it.
func TestDeleteCutAtEveryStep(t *testing.T) {
	for mask := range 8 {
		t.Run(fmt.Sprintf("down=%03b", mask), func(t *testing.T) {
			t.Parallel()
			total := -1
			for k := -1; k <= total; k++ {
				for _, second := range []bool{false, true} {
					if k == 0 || (k == -1 && second) || (testing.Short() && k > 0 && k%5 != 0) {
						continue
					}
					f := newRealmFixture(t, 2, 3, realmOptions{})
					key := f.register("old", 20)
					pre, dev := newDevice(t, f.cfg), newDevice(t, f.cfg)
					downs := f.down(mask)
					tr, _ := dev.run(t, f, k, false, deleteOp)
					if k == -1 {
						total = tr.sent
					}
					f.allUp()
					when := fmt.Sprintf("realms down %s, delete cut after %d messages", downs, k)
					live := f.liveRecords(t)
					recorded := dev.config(t).Realms.Change != nil && dev.config(t).Realms.Change.Kind == "delete"
					if live > 0 && live < 3 && !recorded {
						t.Fatalf("%s: a realm deleted the key but the device did not record the delete", when)
					}
					if live >= 2 {
						f.tolerantIfAll(t, dev, key, live, when)
					}
					d := dev
					if second {
						d = pre
					}
					var rep *ChangeReport
					_, err := d.run(t, f, -1, false, func(s *RealmSet) (err error) {
						rep, err = s.Delete(context.Background(), []byte("old"))
						return err
					})
					after := f.liveRecords(t)
					switch {
					case live >= 2 && (err != nil || after != 0 || !rep.Erased || d.config(t).Realms.Change != nil):
						t.Fatalf("%s, resumed (second device %v): %d realms still hold the key (%v): %+v", when, second, after, err, rep)
					case live < 2 && (err != nil || rep.Erased != (after == 0) || !rep.Complete || len(rep.OldHolders) != after):
						t.Fatalf("%s, resumed: %d realms hold the key but the report says %+v", when, after, rep)
					}
					if _, err := f.recovers(t, d, key, "old"); err == nil {
						t.Fatalf("%s: the password still recovers after the delete", when)
					}
				}
			}
		})
	}
}

// tolerantIfAll: while all three realms still hold the key, any one may be
// removed; with two, both are needed (the delete has begun).
func (f *realmFixture) tolerantIfAll(t *testing.T, d *device, k *BackupKey, live int, when string) {
	t.Helper()
	if live == 3 {
		f.tolerant(t, d, k, when, "old")
		return
	}
	if _, err := f.recovers(t, d, k, "old"); err != nil {
		t.Fatalf("%s: two realms hold the key but it does not recover: %v", when, err)
	}
}
