package qemutest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/applet/vault/vaulttest/testclient"
	"github.com/cofferhsm/coffer/protocol"
)

// killLimit is the attempt limit of the users in the kill test: the vault's
// maximum, so that a counter can grow over several runs before it locks.
const killLimit = protocol.DefaultLimit

// killLogin is one login a worker started during a run.
type killLogin struct {
	right      bool
	start, end time.Time
	attempt    *protocol.Receipt // the attempt (or lock) receipt: a KE2 arrived
	released   bool              // the right password logged in before the kill
	err        error
}

// counted is the counter value the vault committed for this attempt before
// answering its KE2 (0 if no counted attempt receipt arrived).
func (l *killLogin) counted() uint {
	if l.attempt == nil || l.attempt.Kind != protocol.ReceiptAttempt {
		return 0
	}
	return l.attempt.Limit - l.attempt.TriesLeft
}

// killUser is a registered user and what the test knows of its counter.
type killUser struct {
	c      *testclient.Client
	pw     []byte
	key    []byte
	locked bool
}

// readyNumbers parses the applet's ready line.
func readyNumbers(status string) (seq, records, anchor uint64, err error) {
	_, err = fmt.Sscanf(status, "serving: store sequence %d, %d records, anchor counter %d", &seq, &records, &anchor)
	return seq, records, anchor, err
}

func envInt(t *testing.T, name string, def int64) int64 {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, s, err)
	}
	return n
}

// QEMU is killed (SIGKILL: a power cut for the emulated device) at a random
// moment while logins, right and wrong, a few at a time, are in flight, and
// booted again from the same files, many times over. After every kill:
//
//   - the store opens (no tamper error) and its sequence and anchor counter,
//     from the ready line, never go back, nor below any receipt received;
//   - the next login's signed attempt receipt shows a committed counter at
//     least the attempts the test saw answered with a KE2 since the last
//     possible reset (and at most the attempts it started): an attempt the
//     vault answered is never forgotten, a counter never goes back except
//     through a login with the right password;
//   - the right password logs in while tries remain, and a user that reached
//     its limit stays locked on every later boot.
//
// COFFER_KILL_SEED replays a run's random choices (the timing of QEMU still
// varies); COFFER_KILL_RUNS sets the number of runs (20; 6 with -short).
func TestKillDuringLogins(t *testing.T) {
	firmwareImage(t)
	qemuBinary(t)
	ctx := context.Background()
	seed := uint64(envInt(t, "COFFER_KILL_SEED", time.Now().UnixNano()))
	runs := 20
	if testing.Short() {
		runs = 6
	}
	runs = int(envInt(t, "COFFER_KILL_RUNS", int64(runs)))
	t.Logf("seed %d, %d runs (replay with COFFER_KILL_SEED=%d)", seed, runs, seed)
	rng := rand.New(rand.NewPCG(seed, 0xc0ffe4))
	began := time.Now()

	dir := t.TempDir()
	v := boot(t, dir)
	id, err := testclient.FetchIdentity(ctx, v.rt, devProvisioningKey)
	if err != nil {
		t.Fatal(err)
	}
	var (
		users     []*killUser
		cur       *killUser
		ackSeq    uint64 // the highest store sequence in any receipt received
		lastSeq   uint64 // the last ready line's store sequence
		lastAnch  uint64 // and anchor counter
		cStart    uint   // cur's committed counter when the run's logins start
		lockouts  int
		rightOK   int
		maxKE2    int
		totalKE2  int
		totalKill int
	)
	note := func(r *protocol.Receipt) {
		if r != nil && r.StoreSequence > ackSeq {
			ackSeq = r.StoreSequence
		}
	}
	newUser := func() {
		u := &killUser{
			c:   &testclient.Client{RoundTrip: v.rt, Identity: id, UserID: fmt.Appendf(nil, "kill-user-%d", len(users))},
			pw:  fmt.Appendf(nil, "right password %d", len(users)),
			key: bytes.Repeat([]byte{byte(len(users) + 1)}, 32),
		}
		r, err := u.c.Register(ctx, u.pw, u.key, killLimit)
		if err != nil {
			t.Fatalf("register %s: %v", u.c.UserID, err)
		}
		note(r)
		users = append(users, u)
		cur, cStart = u, 0
	}
	newUser()

	for run := 1; run <= runs; run++ {
		// The run: a few workers log in with the right or the wrong
		// password until QEMU is killed.
		workers := 1 + rng.IntN(3)
		rightShare := []float64{0, 0, 0.2, 0.4}[rng.IntN(4)]
		delay := time.Duration(rng.Int64N(int64(700 * time.Millisecond)))
		plans := make([][]bool, workers)
		for w := range plans {
			for range 64 {
				plans[w] = append(plans[w], rng.Float64() < rightShare)
			}
		}
		var (
			mu     sync.Mutex
			logins []*killLogin
			wg     sync.WaitGroup
		)
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for _, right := range plans[w] {
					pw := []byte("wrong password")
					if right {
						pw = cur.pw
					}
					l := &killLogin{right: right, start: time.Now()}
					s, r, err := cur.c.Login(ctx, pw)
					l.attempt, l.err = r, err
					if err == nil {
						// A login resets the counter only once confirmed; a
						// confirmation cut off by the kill may or may not
						// have, which the run treats like an unanswered KE3.
						l.released = s.Confirm(ctx) == nil
						if !bytes.Equal(s.BackupKey, cur.key) {
							l.err = errors.New("released another key")
						}
					}
					l.end = time.Now()
					mu.Lock()
					logins = append(logins, l)
					mu.Unlock()
					if err != nil && !errors.Is(err, testclient.ErrWrongPassword) {
						return // killed
					}
				}
			}()
		}
		killed := make(chan time.Time, 1)
		time.AfterFunc(delay, func() {
			at := time.Now()
			v.cmd.Process.Kill()
			killed <- at
		})
		killedAt := <-killed
		wg.Wait()
		v.kill()
		totalKill++

		// What the run proves about cur's committed counter at the kill.
		var (
			ke2, counted, started, released int
			resetBy                         time.Time // latest moment a reset may have been committed
			resetForever                    bool      // a right-password KE3 may have been sent and not answered
		)
		for _, l := range logins {
			started++
			note(l.attempt)
			// A right password whose record other attempts locked during its
			// login gets "locked" (SPEC.md, "Counting"): an answer, not a fault.
			if l.err != nil && !errors.Is(l.err, testclient.ErrWrongPassword) && !errors.Is(l.err, &protocol.Error{Code: protocol.CodeLocked}) &&
				l.end.Before(killedAt) {
				t.Errorf("run %d: a login failed before the kill: %v", run, l.err)
			}
			if l.released && !l.right {
				t.Fatalf("run %d: a wrong password logged in", run)
			}
			if l.attempt == nil {
				continue
			}
			ke2++
			if l.right && l.attempt.Kind == protocol.ReceiptAttempt {
				if l.released {
					if l.end.After(resetBy) {
						resetBy = l.end
					}
				} else {
					resetForever = true
				}
			}
			if l.released {
				released++
			}
			if l.right && l.attempt.Kind == protocol.ReceiptAttempt && errors.Is(l.err, testclient.ErrWrongPassword) {
				t.Errorf("run %d: the right password was refused on a live record: receipt %+v", run, l.attempt)
			}
		}
		rightOK += released
		lo := uint(0)
		if !resetForever {
			n, top := uint(0), uint(0)
			for _, l := range logins {
				if l.counted() > 0 && (resetBy.IsZero() || l.start.After(resetBy)) {
					n++
					top = max(top, l.counted())
				}
			}
			counted = int(n)
			if resetBy.IsZero() {
				n += cStart
			}
			lo = max(n, top)
		}
		hi := min(cStart+uint(started), killLimit)
		totalKE2 += ke2
		maxKE2 = max(maxKE2, ke2)

		// Boot again from the same files.
		v = boot(t, dir)
		seq, _, anch, err := readyNumbers(v.status)
		if err != nil {
			t.Fatalf("run %d: ready line %q: %v", run, v.status, err)
		}
		if seq < ackSeq || seq < lastSeq || anch < lastAnch {
			t.Fatalf("run %d: store sequence %d, anchor counter %d after the kill; before it: receipts up to sequence %d, sequence %d, anchor counter %d",
				run, seq, anch, ackSeq, lastSeq, lastAnch)
		}
		lastSeq, lastAnch = seq, anch
		id2, err := testclient.FetchIdentity(ctx, v.rt, devProvisioningKey)
		if err != nil {
			t.Fatalf("run %d: identity after the kill: %v", run, err)
		}
		if !bytes.Equal(id2.SigningKey, id.SigningKey) {
			t.Fatalf("run %d: the vault's signing key changed", run)
		}
		for _, u := range users {
			u.c.RoundTrip = v.rt
		}

		// Users locked before stay locked, even to the right password.
		for _, u := range users {
			if !u.locked {
				continue
			}
			_, r, err := u.c.Login(ctx, u.pw)
			if !errors.Is(err, testclient.ErrWrongPassword) || r == nil || r.Kind != protocol.ReceiptLocked || r.FailedSinceSuccess != killLimit {
				t.Fatalf("run %d: locked user %s after the kill: %v, receipt %+v", run, u.c.UserID, err, r)
			}
		}

		// The next login of cur, with a wrong password: its receipt shows
		// the committed counter.
		_, r, err := cur.c.Login(ctx, []byte("wrong password"))
		if !errors.Is(err, testclient.ErrWrongPassword) || r == nil {
			t.Fatalf("run %d: probe login: %v", run, err)
		}
		if r.StoreSequence < seq {
			t.Fatalf("run %d: probe receipt at store sequence %d, below the ready line's %d", run, r.StoreSequence, seq)
		}
		note(r)
		var seen uint
		switch r.Kind {
		case protocol.ReceiptAttempt:
			seen = r.FailedSinceSuccess
			if seen != r.Limit-r.TriesLeft-1 {
				t.Fatalf("run %d: receipt %+v: failed %d but %d of %d tries left", run, r, seen, r.TriesLeft, r.Limit)
			}
		case protocol.ReceiptLocked:
			seen = r.FailedSinceSuccess
			if seen != killLimit {
				t.Fatalf("run %d: locked with counter %d", run, seen)
			}
		default:
			t.Fatalf("run %d: probe receipt kind %d", run, r.Kind)
		}
		reset := "none"
		switch {
		case resetForever:
			reset = "unknown"
		case !resetBy.IsZero():
			reset = "known"
		}
		t.Logf("run %2d: kill after %3d ms, %d workers, right share %.1f: counter %d, %2d logins started, %2d KE2 (%2d counted), %d released, reset %s; counter must be in [%d, %d], is %d%s",
			run, delay.Milliseconds(), workers, rightShare, cStart, started, ke2, counted, released, reset, lo, hi, seen,
			map[bool]string{true: " (locked)", false: ""}[r.Kind == protocol.ReceiptLocked])
		if seen < lo {
			t.Fatalf("run %d: the vault lost counted attempts: counter %d after the kill, but %d attempts were answered with a KE2 since the last possible reset", run, seen, lo)
		}
		if seen > hi {
			t.Fatalf("run %d: counter %d after the kill, but only %d logins were started on a counter of %d", run, seen, started, cStart)
		}
		if r.Kind == protocol.ReceiptLocked {
			cur.locked = true
			lockouts++
			newUser()
			continue
		}
		cStart = seen + 1 // the probe's own attempt
		if cStart == killLimit {
			// The probe was the final attempt: locked now.
			cur.locked = true
			lockouts++
			newUser()
			continue
		}
		// Now and then the right password, while tries remain: it logs in
		// and resets the counter.
		if rng.IntN(3) == 0 {
			s, r, err := cur.c.Login(ctx, cur.pw)
			if err != nil {
				t.Fatalf("run %d: the right password with %d tries left: %v", run, killLimit-cStart, err)
			}
			if !bytes.Equal(s.BackupKey, cur.key) || r.FailedSinceSuccess != cStart || s.Released.FailedSinceSuccess != cStart {
				t.Fatalf("run %d: right password after %d failures: attempt %+v, released %+v", run, cStart, r, s.Released)
			}
			if err := s.Confirm(ctx); err != nil {
				t.Fatalf("run %d: confirming the right password's login: %v", run, err)
			}
			note(r)
			note(s.Released)
			rightOK++
			cStart = 0
		}
	}
	t.Logf("%d kills in %v: %d KE2s answered (at most %d in one run), %d right-password logins, %d lockouts held; seed %d",
		totalKill, time.Since(began).Round(100*time.Millisecond), totalKE2, maxKE2, rightOK, lockouts, seed)
}
