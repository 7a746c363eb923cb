package state

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// sqlStore is the Store logic both databases share: the same statements
// (written for PostgreSQL; the SQLite driver rewrites them), run through a
// dialect's querier. Every method is one transaction (a write) or one
// statement (a read). Writes that must hold across hosts lock the rows they
// decide on: the account's row (SELECT … FOR UPDATE) before the device's
// (a conditional UPDATE), always in that order, so that two hosts never
// count one account twice nor deadlock.
type sqlStore struct {
	d dialect
}

// A querier runs statements, in a transaction or on the pool.
type querier interface {
	exec(ctx context.Context, q string, args ...any) (int64, error)
	queryRow(ctx context.Context, q string, args ...any) scanner
	query(ctx context.Context, q string, args ...any) (rows, error)
}

type scanner interface{ Scan(dest ...any) error }

type rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

// A dialect is what differs between the databases.
type dialect interface {
	// write runs fn in one read-write transaction.
	write(ctx context.Context, fn func(q querier) error) error
	// writeLazy is write for a transaction whose commit need not be on
	// disk before it returns (a rate-limit bucket, spent at every login
	// start): a crash of the machine may lose the latest such commits,
	// never tear the database or lose a commit that came before one made
	// by write. It saves a disk flush per login start.
	writeLazy(ctx context.Context, fn func(q querier) error) error
	// read is the pool for single-statement reads.
	read() querier
	// unique and foreignKey classify a failed statement.
	unique(err error) bool
	foreignKey(err error) bool
}

// Times are Unix nanoseconds, 0 for the zero time; uint64 counters are
// stored bit for bit in a signed 64-bit column.
func t2i(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func i2t(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

func u2i(u uint64) int64 { return int64(u) }
func i2u(i int64) uint64 { return uint64(i) }

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

const accountCols = `name, user_id, token_sha256, device, created`

func scanAccount(s scanner) (Account, error) {
	var a Account
	var tok []byte
	var dev *string
	var created int64
	if err := s.Scan(&a.Name, &a.UserID, &tok, &dev, &created); err != nil {
		return Account{}, err
	}
	if len(tok) != sha256.Size {
		return Account{}, fmt.Errorf("state: account %q: stored token hash of %d bytes", a.Name, len(tok))
	}
	copy(a.TokenSHA256[:], tok)
	if dev != nil {
		a.Device = *dev
	}
	a.Created = i2t(created)
	return a, nil
}

const deviceCols = `name, host, state, capacity, anchor_budget, accounts, healthy, anchor_writes, records, record_capacity, accounts_reported, seen`

func scanDevice(s scanner) (Device, error) {
	var d Device
	var capacity, budget, accounts, writes, records, recordCapacity, reported, seen int64
	if err := s.Scan(&d.Name, &d.Host, &d.State, &capacity, &budget, &accounts, &d.Healthy, &writes, &records, &recordCapacity, &reported, &seen); err != nil {
		return Device{}, err
	}
	d.Capacity, d.AnchorBudget, d.Accounts, d.AnchorWrites = i2u(capacity), i2u(budget), i2u(accounts), i2u(writes)
	d.Records, d.RecordCapacity, d.AccountsReported = i2u(records), i2u(recordCapacity), i2u(reported)
	d.Seen = i2t(seen)
	return d, nil
}

func notFound(err error, format string, args ...any) error {
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%w: "+format, append([]any{ErrNotFound}, args...)...)
	}
	return err
}

func (s *sqlStore) AddAccount(ctx context.Context, a Account) error {
	if err := CheckAccount(a); err != nil {
		return err
	}
	return s.d.write(ctx, func(q querier) error {
		_, err := q.exec(ctx, `INSERT INTO accounts (`+accountCols+`) VALUES ($1, $2, $3, $4, $5)`,
			a.Name, a.UserID, a.TokenSHA256[:], nullable(a.Device), t2i(a.Created))
		switch {
		case err != nil && s.d.unique(err):
			return fmt.Errorf("%w: account %q (its name, user id or token)", ErrExists, a.Name)
		case err != nil && s.d.foreignKey(err):
			return fmt.Errorf("%w: device %q", ErrNotFound, a.Device)
		case err != nil:
			return err
		}
		if a.Device != "" {
			return s.count(ctx, q, a.Device)
		}
		return nil
	})
}

// count counts one more account on device, which must be active: one
// conditional UPDATE, which locks the device's row until the transaction
// ends.
func (s *sqlStore) count(ctx context.Context, q querier, device string) error {
	n, err := q.exec(ctx, `UPDATE devices SET accounts = accounts + 1 WHERE name = $1 AND state = 'active'`, device)
	if err != nil || n == 1 {
		return err
	}
	var st DeviceState
	if err := q.queryRow(ctx, `SELECT state FROM devices WHERE name = $1`, device).Scan(&st); err != nil {
		return notFound(err, "device %q", device)
	}
	return fmt.Errorf("%w: device %q is %s", ErrDeviceState, device, st)
}

func (s *sqlStore) uncount(ctx context.Context, q querier, device *string) error {
	if device == nil {
		return nil
	}
	_, err := q.exec(ctx, `UPDATE devices SET accounts = accounts - 1 WHERE name = $1`, *device)
	return err
}

func (s *sqlStore) RemoveAccount(ctx context.Context, name string) error {
	return s.d.write(ctx, func(q querier) error {
		var dev *string
		if err := q.queryRow(ctx, `DELETE FROM accounts WHERE name = $1 RETURNING device`, name).Scan(&dev); err != nil {
			return notFound(err, "account %q", name)
		}
		return s.uncount(ctx, q, dev)
	})
}

// accountByTokenQuery is route lookup; SQLite runs it through the
// covering index accounts_token_cover (sqliteQuery), PostgreSQL as an
// index-only scan of it (migrations 0003).
const accountByTokenQuery = `SELECT ` + accountCols + ` FROM accounts WHERE token_sha256 = $1`

func (s *sqlStore) AccountByToken(ctx context.Context, sum [sha256.Size]byte) (Account, error) {
	a, err := scanAccount(s.d.read().queryRow(ctx, accountByTokenQuery, sum[:]))
	if err != nil {
		return Account{}, notFound(err, "token")
	}
	return a, nil
}

func (s *sqlStore) AccountByName(ctx context.Context, name string) (Account, error) {
	a, err := scanAccount(s.d.read().queryRow(ctx, `SELECT `+accountCols+` FROM accounts WHERE name = $1`, name))
	if err != nil {
		return Account{}, notFound(err, "account %q", name)
	}
	return a, nil
}

func (s *sqlStore) ListAccounts(ctx context.Context, after string, limit int) ([]Account, error) {
	q := `SELECT ` + accountCols + ` FROM accounts WHERE name > $1 ORDER BY name`
	args := []any{after}
	if limit >= 0 {
		q += ` LIMIT $2`
		args = append(args, limit)
	}
	return list(ctx, s.d.read(), scanAccount, q, args...)
}

func list[T any](ctx context.Context, q querier, scan func(scanner) (T, error), query string, args ...any) ([]T, error) {
	rs, err := q.query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	out := []T{}
	for rs.Next() {
		v, err := scan(rs)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rs.Err()
}

func (s *sqlStore) Place(ctx context.Context, account, device string) (string, error) {
	var placed string
	err := s.d.write(ctx, func(q querier) error {
		var dev *string
		if err := q.queryRow(ctx, `SELECT device FROM accounts WHERE name = $1 FOR UPDATE`, account).Scan(&dev); err != nil {
			return notFound(err, "account %q", account)
		}
		if dev != nil {
			placed = *dev
			return nil
		}
		if err := s.count(ctx, q, device); err != nil {
			return err
		}
		placed = device
		_, err := q.exec(ctx, `UPDATE accounts SET device = $2 WHERE name = $1`, account, device)
		return err
	})
	if err != nil {
		return "", err
	}
	return placed, nil
}

func (s *sqlStore) Unplace(ctx context.Context, account string) error {
	return s.d.write(ctx, func(q querier) error {
		var dev *string
		if err := q.queryRow(ctx, `SELECT device FROM accounts WHERE name = $1 FOR UPDATE`, account).Scan(&dev); err != nil {
			return notFound(err, "account %q", account)
		}
		if dev == nil {
			return nil
		}
		if _, err := q.exec(ctx, `UPDATE accounts SET device = NULL WHERE name = $1`, account); err != nil {
			return err
		}
		return s.uncount(ctx, q, dev)
	})
}

func (s *sqlStore) UnplaceFrom(ctx context.Context, device, after string, limit int) (int, string, error) {
	if limit < 1 {
		return 0, "", fmt.Errorf("state: unplacing %d accounts at a time", limit)
	}
	var names []string
	err := s.d.write(ctx, func(q querier) error {
		var st DeviceState
		if err := q.queryRow(ctx, `SELECT state FROM devices WHERE name = $1`, device).Scan(&st); err != nil {
			return notFound(err, "device %q", device)
		}
		if st == Active {
			return errEvacuateActive(device)
		}
		// The accounts' rows are locked before the device's, in the
		// order Place and Unplace lock them, so that neither deadlocks
		// with this. The batch is read in the order of the index of a
		// device's accounts, from after on, so that each batch reads only
		// its own rows (a scan from the start would pass, on PostgreSQL,
		// the index entries of every account already taken off).
		var err error
		names, err = list(ctx, q, func(r scanner) (string, error) {
			var name string
			return name, r.Scan(&name)
		}, `SELECT name FROM accounts WHERE device = $1 AND name > $2 ORDER BY device, name LIMIT $3 FOR UPDATE`, device, after, limit)
		if err != nil || len(names) == 0 {
			return err
		}
		args, in := appendIn([]any{device}, names)
		n, err := q.exec(ctx, `UPDATE accounts SET device = NULL WHERE device = $1 AND name IN (`+in+`)`, args...)
		if err != nil {
			return err
		}
		if n != int64(len(names)) {
			return fmt.Errorf("state: %d of the %d accounts locked on device %q were taken off", n, len(names), device)
		}
		// The state again, now under the device's row lock: a device
		// activated since the first look may have taken new accounts,
		// which stay (the whole batch rolls back).
		n, err = q.exec(ctx, `UPDATE devices SET accounts = accounts - $2 WHERE name = $1 AND state <> 'active'`, device, len(names))
		if err == nil && n != 1 {
			err = errEvacuateActive(device)
		}
		return err
	})
	// A batch shorter than limit is not the end: on PostgreSQL the row
	// lock skips an account another host moved meanwhile, and those after
	// it are still to come. Only an empty batch ends the walk.
	if err != nil || len(names) == 0 {
		return 0, "", err
	}
	return len(names), names[len(names)-1], nil
}

// appendIn appends names to a statement's args and returns them with the
// placeholders naming them ($N, …), for an IN list.
func appendIn(args []any, names []string) ([]any, string) {
	marks := make([]string, len(names))
	for i, name := range names {
		args = append(args, name)
		marks[i] = fmt.Sprintf("$%d", len(args))
	}
	return args, strings.Join(marks, ", ")
}

func errEvacuateActive(device string) error {
	return fmt.Errorf("%w: device %q is active: drain it first, or new accounts keep arriving", ErrDeviceState, device)
}

func (s *sqlStore) RegisterDevice(ctx context.Context, name, host string) error {
	if err := CheckDeviceName(name); err != nil {
		return err
	}
	return s.d.write(ctx, func(q querier) error {
		if _, err := q.exec(ctx, `INSERT INTO devices (name, host) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`, name, host); err != nil {
			return err
		}
		var h string
		if err := q.queryRow(ctx, `SELECT host FROM devices WHERE name = $1`, name).Scan(&h); err != nil {
			return err
		}
		if h != host {
			return fmt.Errorf("%w: device %q is registered on host %q", ErrExists, name, h)
		}
		return nil
	})
}

// update runs one UPDATE of a device's row; ErrNotFound if there is none.
func (s *sqlStore) update(ctx context.Context, name, set string, args ...any) error {
	return s.d.write(ctx, func(q querier) error {
		n, err := q.exec(ctx, `UPDATE devices SET `+set+` WHERE name = $1`, append([]any{name}, args...)...)
		if err == nil && n == 0 {
			err = fmt.Errorf("%w: device %q", ErrNotFound, name)
		}
		return err
	})
}

func (s *sqlStore) ReportDevice(ctx context.Context, name string, r Report) error {
	if !r.Healthy {
		return s.update(ctx, name, `healthy = $2, seen = $3`, false, t2i(r.Seen))
	}
	return s.update(ctx, name, `healthy = $2, seen = $3, anchor_writes = $4, records = $5, record_capacity = $6, accounts_reported = accounts`,
		true, t2i(r.Seen), u2i(r.AnchorWrites), u2i(r.Records), u2i(r.RecordCapacity))
}

func (s *sqlStore) SetDeviceLimits(ctx context.Context, name string, capacity, anchorBudget uint64) error {
	return s.update(ctx, name, `capacity = $2, anchor_budget = $3`, u2i(capacity), u2i(anchorBudget))
}

func (s *sqlStore) SetDeviceState(ctx context.Context, name string, st DeviceState) error {
	return s.d.write(ctx, func(q querier) error {
		d, err := scanDevice(q.queryRow(ctx, `SELECT `+deviceCols+` FROM devices WHERE name = $1 FOR UPDATE`, name))
		if err != nil {
			return notFound(err, "device %q", name)
		}
		if err := CheckTransition(d, st); err != nil {
			return err
		}
		_, err = q.exec(ctx, `UPDATE devices SET state = $2 WHERE name = $1`, name, string(st))
		return err
	})
}

func (s *sqlStore) Devices(ctx context.Context) ([]Device, error) {
	return list(ctx, s.d.read(), scanDevice, `SELECT `+deviceCols+` FROM devices ORDER BY name`)
}

func (s *sqlStore) Device(ctx context.Context, name string) (Device, error) {
	d, err := scanDevice(s.d.read().queryRow(ctx, `SELECT `+deviceCols+` FROM devices WHERE name = $1`, name))
	if err != nil {
		return Device{}, notFound(err, "device %q", name)
	}
	return d, nil
}

const hostCols = `name, peer_url, seen, instance, peer_key, removed`

func scanHost(sc scanner) (Host, error) {
	var h Host
	var seen int64
	err := sc.Scan(&h.Name, &h.PeerURL, &seen, &h.Instance, &h.PeerKey, &h.Removed)
	h.Seen = i2t(seen)
	return h, err
}

// RegisterHost locks the host's row, decides with CheckRegisterHost and
// writes the entry, in one transaction: of two processes starting under
// one name at once, the second sees the first's entry.
func (s *sqlStore) RegisterHost(ctx context.Context, h Host, fresh time.Duration) error {
	if err := CheckHostName(h.Name); err != nil {
		return err
	}
	var key any
	if len(h.PeerKey) != 0 {
		key = h.PeerKey
	}
	return s.d.write(ctx, func(q querier) error {
		// A row to lock first (no instance, never seen: it holds nothing),
		// so that two first registrations queue on it.
		if _, err := q.exec(ctx, `INSERT INTO hosts (name, peer_url, seen) VALUES ($1, '', 0) ON CONFLICT (name) DO NOTHING`, h.Name); err != nil {
			return err
		}
		old, err := scanHost(q.queryRow(ctx, `SELECT `+hostCols+` FROM hosts WHERE name = $1 FOR UPDATE`, h.Name))
		if err != nil {
			return err
		}
		if err := CheckRegisterHost(&old, h, fresh); err != nil {
			return err
		}
		_, err = q.exec(ctx, `INSERT INTO hosts (`+hostCols+`) VALUES ($1, $2, $3, $4, $5, false)
			ON CONFLICT (name) DO UPDATE SET peer_url = excluded.peer_url, seen = excluded.seen,
			instance = excluded.instance, peer_key = excluded.peer_key, removed = false`,
			h.Name, h.PeerURL, t2i(h.Seen), h.Instance, key)
		return err
	})
}

func (s *sqlStore) RemoveHost(ctx context.Context, name string) error {
	return s.d.write(ctx, func(q querier) error {
		n, err := q.exec(ctx, `UPDATE hosts SET removed = true WHERE name = $1`, name)
		if err == nil && n == 0 {
			err = fmt.Errorf("%w: host %q", ErrNotFound, name)
		}
		return err
	})
}

func (s *sqlStore) Hosts(ctx context.Context) ([]Host, error) {
	return list(ctx, s.d.read(), scanHost, `SELECT `+hostCols+` FROM hosts ORDER BY name`)
}

func (s *sqlStore) PruneBuckets(ctx context.Context, idleSince time.Time, after string, limit int) (int, string, error) {
	if limit < 1 {
		return 0, "", fmt.Errorf("state: pruning %d buckets at a time", limit)
	}
	type bucketAge struct {
		name string
		last int64
	}
	batch, err := list(ctx, s.d.read(), func(r scanner) (bucketAge, error) {
		var b bucketAge
		return b, r.Scan(&b.name, &b.last)
	}, `SELECT name, last_refill FROM buckets WHERE name > $1 ORDER BY name LIMIT $2`, after, limit)
	if err != nil || len(batch) == 0 {
		return 0, "", err
	}
	next := batch[len(batch)-1].name
	if len(batch) < limit {
		next = ""
	}
	cutoff := t2i(idleSince)
	var idle []string
	for _, b := range batch {
		if b.last < cutoff {
			idle = append(idle, b.name)
		}
	}
	if len(idle) == 0 {
		return 0, next, nil
	}
	args, in := appendIn([]any{cutoff}, idle)
	var n int64
	err = s.d.write(ctx, func(q querier) error {
		// last_refill is checked again under the write: a Take that
		// spent from the bucket since it was read keeps it.
		var err error
		n, err = q.exec(ctx, `DELETE FROM buckets WHERE last_refill < $1 AND name IN (`+in+`)`, args...)
		return err
	})
	if err != nil {
		return 0, "", err
	}
	return int(n), next, nil
}

// Take locks the bucket's row (creating it full), applies Refill to it and
// writes it back, in one transaction: two hosts spending the last token
// queue on the row lock, and the second sees the first's spending.
func (s *sqlStore) Take(ctx context.Context, key string, rate float64, burst int, now time.Time) (bool, time.Duration, error) {
	return s.take(ctx, s.d.writeLazy, key, rate, burst, now)
}

// take is Take through the given kind of write transaction (the
// benchmark compares the two).
func (s *sqlStore) take(ctx context.Context, write func(context.Context, func(querier) error) error, key string, rate float64, burst int, now time.Time) (bool, time.Duration, error) {
	if rate <= 0 {
		return true, 0, nil
	}
	var ok bool
	var wait time.Duration
	err := write(ctx, func(q querier) error {
		// One statement makes the row if there is none and locks it if
		// there is: a prune deleting it between a make and a separate
		// lock would leave nothing to lock (TestTakeRacesPrune).
		var tokens float64
		var lastNS int64
		if err := q.queryRow(ctx, `INSERT INTO buckets (name, tokens, last_refill) VALUES ($1, $2, $3)
			ON CONFLICT (name) DO UPDATE SET tokens = buckets.tokens RETURNING tokens, last_refill`,
			key, float64(max(burst, 1)), t2i(now)).Scan(&tokens, &lastNS); err != nil {
			return err
		}
		last := i2t(lastNS)
		ok, wait = Refill(&tokens, &last, rate, burst, now)
		_, err := q.exec(ctx, `UPDATE buckets SET tokens = $2, last_refill = $3 WHERE name = $1`, key, tokens, t2i(last))
		return err
	})
	if err != nil {
		return false, 0, err
	}
	return ok, wait, nil
}
