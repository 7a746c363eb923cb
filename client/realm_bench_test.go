package client

import (
	"context"
	"encoding/hex"
	"slices"
	"syscall"
	"testing"
	"time"
)

// Recovery latency, realms against the single vault (REALMS.md 17: target
// ≤ 1.2×). Each benchmark runs a whole recovery as the CLI does from a
// configuration, with the real Argon2id, against vaults in this process
// behind the real cofferd handlers over loopback HTTP (newTestRealm; the
// single vault is one such realm's vault used as a single vault). They
// report the median and 99th percentile of the iterations' wall time and
// the process's CPU time (client, cofferd and vaults together) per
// recovery. BenchmarkRecoverRatio alternates the two, so that both see the
// same load, and reports the ratios: figures, not timed assertions.
//
//	go test ./client -run '^$' -bench 'BenchmarkRecover' -benchtime 30x -count 5

// recoveryTimes collects the wall and CPU time of each recovery.
type recoveryTimes struct{ wall, cpu []time.Duration }

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// time runs one recovery and records it.
func (r *recoveryTimes) time(b *testing.B, once func() error) {
	w, c := time.Now(), cpuTime()
	if err := once(); err != nil {
		b.Fatal(err)
	}
	r.cpu = append(r.cpu, cpuTime()-c)
	r.wall = append(r.wall, time.Since(w))
}

// percentile is the nearest-rank q-th percentile of d, which it sorts.
func percentile(d []time.Duration, q int) time.Duration {
	slices.Sort(d)
	return d[max(0, (len(d)*q+99)/100-1)]
}

func (r *recoveryTimes) p50() time.Duration    { return percentile(r.wall, 50) }
func (r *recoveryTimes) p99() time.Duration    { return percentile(r.wall, 99) }
func (r *recoveryTimes) cpuP50() time.Duration { return percentile(r.cpu, 50) }

func (r *recoveryTimes) report(b *testing.B, prefix string) {
	b.ReportMetric(float64(r.p50().Nanoseconds()), prefix+"p50-ns")
	b.ReportMetric(float64(r.p99().Nanoseconds()), prefix+"p99-ns")
	b.ReportMetric(float64(r.cpuP50().Nanoseconds()), prefix+"cpu-p50-ns")
}

// realmsRecovery registers at a 2-of-3 realm set and returns one recovery:
// probe every realm, agree on the version and fetch its manifest,
// evaluate at t, Argon2id, unlock and confirm (the third realm by a
// challenge), K unwrapped.
func realmsRecovery(b *testing.B) func() error {
	ctx := context.Background()
	f := newRealmFixture(b, 2, 3, realmOptions{})
	f.opts.stretch = nil // the real Argon2id, for registration and recovery
	k := f.register("correct horse", 10)
	return func() error {
		s, err := OpenRealmSet(f.cfg, f.opts)
		if err != nil {
			return err
		}
		rec, err := s.Recover(ctx, []byte("correct horse"))
		if err != nil {
			return err
		}
		if !rec.Key.Equal(k) {
			b.Fatal("recovered another key")
		}
		return nil
	}
}

// singleRecovery registers at a single vault and returns one recovery as
// coffer restore does it: connect (the identity bundle checked against the
// pin), an OPAQUE login releasing K, and the close that confirms it.
func singleRecovery(b *testing.B) func() error {
	ctx := context.Background()
	r := newTestRealm(b, "single", realmOptions{})
	k := randomKey(b)
	rcp, _ := k.AgeRecipient()
	cfg := &Config{Version: ConfigVersion, Mode: ModePassword, AgeRecipient: rcp, Server: r.url, Token: r.token,
		ProvisioningKey: hex.EncodeToString(r.provisioning), UserID: hex.EncodeToString(r.userID)}
	c, err := Connect(ctx, cfg, Options{}) // the real Argon2id
	if err != nil {
		b.Fatal(err)
	}
	if _, err := c.Register(ctx, []byte("correct horse"), k, 10); err != nil {
		b.Fatal(err)
	}
	return func() error {
		c, err := Connect(ctx, cfg, Options{})
		if err != nil {
			return err
		}
		s, err := c.Login(ctx, []byte("correct horse"))
		if err != nil {
			return err
		}
		same := s.BackupKey().Equal(k)
		// The close carries the confirmation, as the realms' does (and
		// wipes K).
		if err := s.Close(ctx); err != nil {
			return err
		}
		if !same {
			b.Fatal("the vault released another key")
		}
		return nil
	}
}

func BenchmarkRecoverRealms2of3(b *testing.B) {
	once := realmsRecovery(b)
	var r recoveryTimes
	for b.Loop() {
		r.time(b, once)
	}
	r.report(b, "")
}

func BenchmarkRecoverSingleVault(b *testing.B) {
	once := singleRecovery(b)
	var r recoveryTimes
	for b.Loop() {
		r.time(b, once)
	}
	r.report(b, "")
}

// BenchmarkRecoverRatio alternates a realm recovery and a single-vault
// recovery in every iteration and reports both and their ratios
// (realms/single).
func BenchmarkRecoverRatio(b *testing.B) {
	realms, single := realmsRecovery(b), singleRecovery(b)
	var r, s recoveryTimes
	for b.Loop() {
		r.time(b, realms)
		s.time(b, single)
	}
	r.report(b, "realms-")
	s.report(b, "single-")
	b.ReportMetric(float64(r.p50())/float64(s.p50()), "p50-ratio")
	b.ReportMetric(float64(r.p99())/float64(s.p99()), "p99-ratio")
	b.ReportMetric(float64(r.cpuP50())/float64(s.cpuP50()), "cpu-ratio")
}
