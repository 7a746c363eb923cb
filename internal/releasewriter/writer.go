package releasewriter

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/storage/posix"
	"golang.org/x/mod/sumdb/note"

	"github.com/cofferhsm/coffer/internal/notekey"
	"github.com/cofferhsm/coffer/protocol/releaselog"
)

// ErrUnwitnessed: the entry is in the log, but no checkpoint covering it
// was cosigned by the policy's quorum in time. The error names the
// witnesses that did not cosign.
var ErrUnwitnessed = errors.New("releasewriter: no witnessed checkpoint covers the entry")

// Defaults for Config.
const (
	// DefaultCheckpointInterval is short: the operator's command waits
	// for each checkpoint.
	DefaultCheckpointInterval = time.Second
	DefaultWitnessTimeout     = 5 * time.Second
)

// Config opens a log.
type Config struct {
	Dir    string      // the log's folder (tlog-tiles layout; created if missing)
	Signer note.Signer // the release key; its name is the log's origin
	// Policy pins the release key, the witnesses and the quorum; every
	// checkpoint published must verify against it.
	Policy *releaselog.Policy
	// WitnessURLs gives, for each witness key of the policy (its
	// cosignature/v1 vkey), the base URL of its tlog-witness endpoint
	// (add-checkpoint is under it).
	WitnessURLs map[string]string
	// CheckpointInterval is how often a new checkpoint may be published
	// (DefaultCheckpointInterval if 0; tessera's minimum is 100ms).
	CheckpointInterval time.Duration
	// WitnessTimeout bounds one round of witnessing (DefaultWitnessTimeout if 0).
	WitnessTimeout time.Duration
	// PublishTimeout bounds how long Add waits for a witnessed checkpoint
	// (if 0: one interval and two witnessing rounds).
	PublishTimeout time.Duration
	// RepublishInterval is how long an unchanged checkpoint stays
	// published before it is sent to the witnesses again, to be cosigned
	// anew (if 0: tessera's default, ten minutes; never less than
	// CheckpointInterval). For Refresh, which keeps a quiet log fresh,
	// coffer-release refresh sets it to CheckpointInterval.
	RepublishInterval time.Duration
	HTTPClient        *http.Client // for the witnesses (http.DefaultClient's transport if nil)
	// NewDriver, if set, makes the tessera storage driver instead of the
	// POSIX one at Dir: an operator who wants the log in a database or
	// in cloud storage passes tessera's MySQL, GCP or AWS driver here
	// (their modules are not linked into coffer-release). witnesses is
	// the client the driver must use for the witnesses' HTTP calls, so
	// that Add can name those that do not answer.
	NewDriver func(ctx context.Context, witnesses *http.Client) (tessera.Driver, error)
}

// Log is an open release log, for writing. One Add at a time.
type Log struct {
	policy   *releaselog.Policy
	reader   tessera.LogReader
	appender *tessera.Appender
	shutdown func(context.Context) error
	awaiter  *tessera.PublicationAwaiter
	rec      *witnessRecorder // nil without witnesses (tests only)
	timeout  time.Duration
	// refreshTimeout bounds Refresh: a republication's wait and a
	// publication.
	refreshTimeout time.Duration
	cancel         context.CancelFunc

	mu     sync.Mutex
	leaves [][]byte          // every integrated entry, in order
	index  map[string]uint64 // leaf data → index
}

// Open opens (or creates) the log in cfg.Dir. It refuses a policy that does
// not pin cfg.Signer, or a witness without a URL. Creating a log publishes
// its empty checkpoint, which the quorum must already cosign.
func Open(ctx context.Context, cfg Config) (*Log, error) {
	return open(ctx, cfg, true)
}

// open with witnessed false makes a log no witness cosigns: only the
// benchmark that measures what witnessing costs uses it.
func open(ctx context.Context, cfg Config, witnessed bool) (*Log, error) {
	if cfg.Dir == "" && cfg.NewDriver == nil || cfg.Signer == nil || cfg.Policy == nil {
		return nil, errors.New("releasewriter: a folder (or a driver), a release key and a policy are required")
	}
	p := cfg.Policy
	if err := p.Check(); err != nil {
		return nil, err
	}
	if cfg.Signer.Name() != p.Origin || !notekey.Matches(cfg.Signer, p.LogKey) {
		return nil, fmt.Errorf("releasewriter: the release key %q is not the key the policy pins (%s)", cfg.Signer.Name(), p.LogKey)
	}
	if cfg.CheckpointInterval == 0 {
		cfg.CheckpointInterval = DefaultCheckpointInterval
	}
	if cfg.WitnessTimeout == 0 {
		cfg.WitnessTimeout = DefaultWitnessTimeout
	}
	if cfg.PublishTimeout == 0 {
		cfg.PublishTimeout = cfg.CheckpointInterval + 2*cfg.WitnessTimeout
	}
	var base http.RoundTripper
	if cfg.HTTPClient != nil {
		base = cfg.HTTPClient.Transport
	}
	republish := cfg.RepublishInterval
	if republish == 0 {
		republish = tessera.DefaultCheckpointRepublishInterval
	}
	republish = max(republish, cfg.CheckpointInterval) // tessera refuses less
	l := &Log{policy: p, timeout: cfg.PublishTimeout, refreshTimeout: republish + cfg.CheckpointInterval + cfg.PublishTimeout,
		index: map[string]uint64{}}
	opts := tessera.NewAppendOptions().
		WithCheckpointSigner(cfg.Signer).
		WithCheckpointInterval(cfg.CheckpointInterval).
		WithCheckpointRepublishInterval(republish).
		WithBatching(1, 10*time.Millisecond). // one release at a time: sequence it at once
		WithShutdownTimeout(cfg.PublishTimeout)
	client := &http.Client{}
	if witnessed {
		group, names, err := witnessGroup(p, cfg.WitnessURLs)
		if err != nil {
			return nil, err
		}
		l.rec = newWitnessRecorder(base, names)
		client.Transport = l.rec
		// FailOpen false: a checkpoint the quorum did not cosign is never published.
		opts.WithWitnesses(group, &tessera.WitnessOptions{Timeout: cfg.WitnessTimeout, FailOpen: false})
	}
	newDriver := cfg.NewDriver
	if newDriver == nil {
		newDriver = func(ctx context.Context, c *http.Client) (tessera.Driver, error) {
			return posix.New(ctx, posix.Config{Path: cfg.Dir, HTTPClient: c})
		}
	}
	driver, err := newDriver(ctx, client)
	if err != nil {
		return nil, fmt.Errorf("releasewriter: %s: %w", cfg.Dir, err)
	}
	// The appender's background work lives until Close, not until ctx.
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	l.cancel = cancel
	l.appender, l.shutdown, l.reader, err = tessera.NewAppender(bg, driver, opts)
	if err != nil {
		cancel()
		if l.rec != nil {
			return nil, fmt.Errorf("%w: creating the log %s: %v (%s)", ErrUnwitnessed, cfg.Dir, err, l.rec.silent())
		}
		return nil, fmt.Errorf("releasewriter: opening the log %s: %w", cfg.Dir, err)
	}
	readCheckpoint := l.reader.ReadCheckpoint
	if witnessed {
		readCheckpoint = l.readWitnessedCheckpoint
	}
	l.awaiter = tessera.NewPublicationAwaiter(bg, readCheckpoint, 25*time.Millisecond)
	if err := l.refresh(ctx); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// witnessGroup builds tessera's witness group from the policy: every
// policy witness, with its URL, and the policy's quorum of them. It goes
// through tessera's policy text, the one public way to build a group of
// any size.
func witnessGroup(p *releaselog.Policy, urls map[string]string) (tessera.WitnessGroup, map[string]string, error) {
	var text strings.Builder
	names := map[string]string{}
	var members []string
	for i, key := range p.Witnesses {
		base := urls[key]
		if base == "" {
			return tessera.WitnessGroup{}, nil, fmt.Errorf("releasewriter: no URL for witness %s", key)
		}
		u, err := url.Parse(base)
		if err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || strings.ContainsAny(base, " \t\n#") {
			return tessera.WitnessGroup{}, nil, fmt.Errorf("releasewriter: witness URL %q is not an http(s) URL", base)
		}
		v, err := fnote.NewVerifierForCosignatureV1(key)
		if err != nil {
			return tessera.WitnessGroup{}, nil, err
		}
		member := fmt.Sprintf("w%d", i)
		members = append(members, member)
		fmt.Fprintf(&text, "witness %s %s %s\n", member, key, base)
		names[u.JoinPath("/add-checkpoint").String()] = v.Name()
	}
	fmt.Fprintf(&text, "group quorum-group %d %s\nquorum quorum-group\n", p.Quorum, strings.Join(members, " "))
	g, err := tessera.NewWitnessGroupFromPolicy([]byte(text.String()))
	if err != nil {
		return tessera.WitnessGroup{}, nil, fmt.Errorf("releasewriter: witness group: %w", err)
	}
	return g, names, nil
}

// readWitnessedCheckpoint is the awaiter's view of the log: the published
// checkpoint, only once it verifies against the policy.
func (l *Log) readWitnessedCheckpoint(ctx context.Context) ([]byte, error) {
	raw, err := l.reader.ReadCheckpoint(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := l.policy.VerifyCheckpoint(raw); err != nil {
		return nil, fmt.Errorf("releasewriter: the published checkpoint: %w", err)
	}
	return raw, nil
}

// Policy is the policy the log publishes under.
func (l *Log) Policy() *releaselog.Policy { return l.policy }

// Add logs e and returns its index and a published checkpoint that covers
// it, verified against the policy. If e is already in the log (an earlier
// Add that was not witnessed in time), it is not logged again: Add waits
// for a checkpoint covering the existing entry.
func (l *Log) Add(ctx context.Context, e *releaselog.Entry) (uint64, []byte, error) {
	data, err := e.Marshal()
	if err != nil {
		return 0, nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.refresh(ctx); err != nil {
		return 0, nil, err
	}
	idx, dup := l.index[string(data)]
	if !dup {
		i, err := l.appender.Add(ctx, tessera.NewEntry(data))()
		if err != nil {
			return 0, nil, fmt.Errorf("releasewriter: sequencing the entry: %w", err)
		}
		idx = i.Index
		if err := l.refresh(ctx); err != nil {
			return 0, nil, err
		}
	}
	wctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	_, raw, err := l.awaiter.Await(wctx, func() (tessera.Index, error) { return tessera.Index{Index: idx, IsDup: dup}, nil })
	if err != nil {
		if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) && l.rec != nil {
			return idx, nil, fmt.Errorf("%w: entry %d is sequenced, but no checkpoint covering it was cosigned by %d of the policy's witnesses within %v: %s",
				ErrUnwitnessed, idx, l.policy.Quorum, l.timeout, l.rec.silent())
		}
		return idx, nil, fmt.Errorf("releasewriter: waiting for a checkpoint covering entry %d: %w", idx, err)
	}
	if l.rec != nil {
		cp, err := l.policy.VerifyCheckpoint(raw)
		if err != nil {
			return idx, nil, err
		}
		if cp.Size <= idx {
			return idx, nil, fmt.Errorf("releasewriter: the checkpoint (size %d) does not cover entry %d", cp.Size, idx)
		}
	}
	return idx, raw, nil
}

// Refresh has the log's checkpoint cosigned again by the witnesses, with
// no new entry, so that a quiet log stays fresh for verifiers whose policy
// has a max-age (RELEASES.md, section 4). It returns once the published
// checkpoint verifies against the policy and its quorum of witnesses
// cosigned it no earlier than the second Refresh started; tessera
// republishes an unchanged checkpoint every RepublishInterval. A
// checkpoint the quorum does not cosign is never published: the last
// witnessed one stays, and Refresh fails with ErrUnwitnessed naming the
// witnesses that did not answer.
func (l *Log) Refresh(ctx context.Context) (*releaselog.Checkpoint, error) {
	if l.rec == nil {
		return nil, errors.New("releasewriter: a log without witnesses has nothing to refresh")
	}
	start := time.Now().Truncate(time.Second)
	wctx, cancel := context.WithTimeout(ctx, l.refreshTimeout)
	defer cancel()
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for {
		if raw, err := l.reader.ReadCheckpoint(wctx); err == nil {
			if cp, err := l.policy.VerifyCheckpoint(raw); err == nil {
				if at, ok := cp.WitnessedAt(l.policy.Quorum, time.Now()); ok && !at.Before(start) {
					return cp, nil
				}
			}
		}
		select {
		case <-wctx.Done():
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("%w: the checkpoint was not cosigned again by %d of the policy's witnesses within %v: %s",
				ErrUnwitnessed, l.policy.Quorum, l.refreshTimeout, l.rec.silent())
		case <-tick.C:
		}
	}
}

// refresh reads the entries integrated since the last look (by this
// process or another writer of the same folder).
func (l *Log) refresh(ctx context.Context) error {
	size, err := l.reader.IntegratedSize(ctx)
	if err != nil {
		return fmt.Errorf("releasewriter: reading the tree size: %w", err)
	}
	have := uint64(len(l.leaves))
	if size < have {
		return fmt.Errorf("releasewriter: the log shrank from %d to %d entries", have, size)
	}
	more, err := readLeaves(ctx, l.reader.ReadEntryBundle, have, size)
	if err != nil {
		return err
	}
	for i, d := range more {
		if _, seen := l.index[string(d)]; !seen {
			l.index[string(d)] = have + uint64(i)
		}
	}
	l.leaves = append(l.leaves, more...)
	return nil
}

// Entries returns the leaf data of every integrated entry, in order
// (including any not yet covered by a witnessed checkpoint).
func (l *Log) Entries(ctx context.Context) ([][]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.refresh(ctx); err != nil {
		return nil, err
	}
	return append([][]byte(nil), l.leaves...), nil
}

// Checkpoint returns the published checkpoint, verified against the policy.
func (l *Log) Checkpoint(ctx context.Context) (*releaselog.Checkpoint, error) {
	raw, err := l.reader.ReadCheckpoint(ctx)
	if err != nil {
		return nil, fmt.Errorf("releasewriter: reading the checkpoint: %w", err)
	}
	return l.policy.VerifyCheckpoint(raw)
}

// Proof builds the proof bundle of entry index against the published
// checkpoint, and checks it with the policy before returning it.
func (l *Log) Proof(ctx context.Context, index uint64) (*releaselog.Proof, error) {
	cp, err := l.Checkpoint(ctx)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	err = l.refresh(ctx)
	var data []byte
	if err == nil && index < uint64(len(l.leaves)) {
		data = l.leaves[index]
	}
	l.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return buildProof(ctx, l.policy, cp, index, data, l.reader.ReadTile)
}

// Close waits (bounded) for the checkpoint covering what this Log added,
// then stops the log's background work.
func (l *Log) Close() error {
	defer l.cancel()
	if err := l.shutdown(context.Background()); err != nil {
		return fmt.Errorf("releasewriter: closing: %w", err)
	}
	return nil
}
