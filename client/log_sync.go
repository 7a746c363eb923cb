package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cofferhsm/coffer/client/logcheck"
	"github.com/cofferhsm/coffer/protocol/releaselog"
)

// ErrStaleLog: the policy has a max-age, and no checkpoint this device
// could get (from the vaults' hosts, the pinned log URL, or saved from
// before) was cosigned by the policy's quorum of witnesses within it. A
// host that keeps serving an old checkpoint could be hiding a revocation
// logged since. Refused unless AllowUnlogged (--insecure); a revocation
// the device has seen is refused all the same.
var ErrStaleLog = errors.New("the release log this device could read is older than its policy's max-age")

// logRun is what one run (a Connect, or one operation of a realm set)
// read of the release log: every source, once, and what they taught.
type logRun struct {
	read    map[string]*logcheck.Read // by source name
	src     map[string]logcheck.Source
	entries []logcheck.Logged // entries new to the view in this run, in order
	// all is the whole log, read again in this run (by remember or
	// logged), at the size it was read; nil: not read again.
	all   []logcheck.Logged
	fresh bool  // some sync of this run found the view fresh
	stale error // why the view is not fresh (nil: it is, or no max-age)
	// unresolved is why an identity revocation is not yet resolved to
	// keys (LogPin.remember's error): it could be any vault's, and every
	// vault is refused, --insecure or not. nil: every one is.
	unresolved error
}

// hostLog is the release log as the vault behind conn's cofferd serves it
// (GET /v1/log/), or the source Options.LogSource gives instead.
func (vt *vaultTrust) hostLog(conn *Conn) logcheck.Named {
	if vt.source != nil {
		return logcheck.Named{Name: "the log source given", Source: vt.source}
	}
	u := conn.base.JoinPath("/v1/log/")
	return logcheck.Named{Name: u.Redacted(), Source: logcheck.HTTPSource(u, conn.http)}
}

// pinnedLog is the log URL the configuration pins with the policy (`coffer
// log pin FILE --url URL`), read at every run besides the vaults' hosts.
func (vt *vaultTrust) pinnedLog() (logcheck.Named, bool, error) {
	if vt.pin.URL == "" {
		return logcheck.Named{}, false, nil
	}
	u, err := parseLogURL(vt.pin.URL)
	if err != nil {
		return logcheck.Named{}, false, err
	}
	hc := &http.Client{Timeout: logcheck.RequestTimeout}
	if vt.httpClient != nil {
		c := *vt.httpClient
		hc = &c
	}
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return logcheck.Named{Name: u.Redacted(), Source: logcheck.HTTPSource(u, hc)}, true, nil
}

func (vt *vaultTrust) clock() time.Time {
	if vt.now != nil {
		return vt.now()
	}
	return time.Now()
}

// parseLogURL reads a log URL: http(s), with a host, no user info.
func parseLogURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "https" && u.Scheme != "http" || u.Host == "" || u.User != nil || u.Fragment != "" {
		return nil, fmt.Errorf("log.url %q is not an http(s) URL of a release log (tlog-tiles: its checkpoint is under it)", s)
	}
	return u, nil
}

// prefetchLog reads the release log from the pinned URL and from the host
// of every conn, all together, before any vault is checked: the view then
// holds the newest tree any of them serves, so a host that serves an old
// copy cannot hide a revocation another serves. newRun starts the run
// afresh (a new operation of a realm set). Errors are reported by logged,
// per vault.
func (vt *vaultTrust) prefetchLog(ctx context.Context, conns []*Conn, newRun bool) {
	if vt.pin == nil {
		return
	}
	vt.mu.Lock()
	defer vt.mu.Unlock()
	if newRun {
		vt.run = nil
	}
	policy, err := vt.pin.policy()
	if err != nil {
		return
	}
	var hosts []logcheck.Named
	for _, c := range conns {
		hosts = append(hosts, vt.hostLog(c))
	}
	_ = vt.syncLocked(ctx, policy, hosts)
}

// prefetchRealms is prefetchLog for realm entries, through connections
// made for it.
func (vt *vaultTrust) prefetchRealms(ctx context.Context, entries []*RealmEntry, hc *http.Client, newRun bool) {
	var conns []*Conn
	for _, e := range entries {
		if c, err := NewConn(e.Server, e.Token, hc); err == nil {
			conns = append(conns, c)
		}
	}
	vt.prefetchLog(ctx, conns, newRun)
}

// syncLocked reads, with logcheck.Sync, the pinned URL and the hosts given
// that this run has not read yet, moves the view, remembers every new
// revocation (resolving identity revocations to keys, LogPin.remember,
// from the first host given if it serves the view's tree, else from
// another source that does) and keeps the freshest checkpoint of the
// view's tree. vt.mu is held.
func (vt *vaultTrust) syncLocked(ctx context.Context, policy *releaselog.Policy, hosts []logcheck.Named) error {
	if vt.run == nil {
		vt.run = &logRun{read: map[string]*logcheck.Read{}, src: map[string]logcheck.Source{}}
	}
	run := vt.run
	var todo []logcheck.Named
	seen := map[string]bool{}
	add := func(n logcheck.Named) {
		if run.read[n.Name] == nil && !seen[n.Name] {
			seen[n.Name] = true
			todo = append(todo, n)
		}
	}
	pinned, ok, err := vt.pinnedLog()
	if err != nil {
		return err
	}
	if ok {
		add(pinned)
	}
	for _, h := range hosts {
		add(h)
	}
	if len(todo) == 0 {
		return nil
	}
	s := logcheck.Sync(ctx, todo, policy, &vt.pin.View, []byte(vt.pin.Checkpoint), vt.clock())
	for i := range s.Reads {
		run.read[s.Reads[i].Name], run.src[s.Reads[i].Name] = &s.Reads[i], todo[i].Source
	}
	run.entries = append(run.entries, s.Entries...)
	prefer := ""
	if len(hosts) > 0 {
		prefer = hosts[0].Name
	}
	// Each source that serves the view's tree in turn: one that will not
	// serve its entries again cannot keep the revocation unresolved when
	// another can.
	srcs := run.atView(prefer, vt.pin.View.Size)
	var src logcheck.Source
	if len(srcs) > 0 {
		src = srcs[0]
	}
	all, err := vt.pin.remember(ctx, src, s.Entries)
	for i := 1; err != nil && i < len(srcs); i++ {
		all, err = vt.pin.remember(ctx, srcs[i], nil)
	}
	run.unresolved = err
	if all != nil {
		run.all = all
	}
	if s.Newest != nil {
		vt.pin.Checkpoint = string(s.Newest.Raw)
	}
	run.fresh = run.fresh || s.Stale == nil
	if run.fresh {
		run.stale = nil
	} else {
		run.stale = s.Stale
	}
	return nil
}

// refused is the error that refuses a vault whose host is named host: its
// host's copy of the log, or the pinned URL's, was served and found wrong
// (not witnessed, inconsistent, ...), which no option lets past. nil when
// neither was.
func (run *logRun) refused(host, pinned string) error {
	if r := run.read[host]; r != nil && lying(r.Err) {
		return fmt.Errorf("client: the release log: %w", r.Err)
	}
	if r := run.read[pinned]; pinned != "" && r != nil && lying(r.Err) {
		return fmt.Errorf("client: the release log at %s: %w", pinned, r.Err)
	}
	return nil
}

func lying(err error) bool {
	return err != nil && !errors.Is(err, logcheck.ErrStale) && !unreadable(err)
}

// anyRead: some source of this run served a checkpoint that verified and
// was not refused.
func (run *logRun) anyRead() bool {
	for _, r := range run.read {
		if r.Checkpoint != nil && (r.Err == nil || errors.Is(r.Err, logcheck.ErrStale)) {
			return true
		}
	}
	return false
}

// atView is every source that served the view's tree in this run, to read
// its entries again: the host's own first if it did, then the others by
// name.
func (run *logRun) atView(host string, size uint64) []logcheck.Source {
	ok := func(r *logcheck.Read) bool {
		return r != nil && r.Err == nil && r.Checkpoint != nil && r.Checkpoint.Size == size
	}
	var names []string
	for name, r := range run.read {
		if name != host && ok(r) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	if ok(run.read[host]) {
		names = append([]string{host}, names...)
	}
	out := make([]logcheck.Source, len(names))
	for i, n := range names {
		out[i] = run.src[n]
	}
	return out
}

// staleError refuses vault name for a log older than the policy's max-age,
// naming what was read and how to get past.
func (run *logRun) staleError(name string) error {
	var sources []string
	for n, r := range run.read {
		s := n
		if r.Err != nil && r.Checkpoint == nil {
			s += " (not read)"
		}
		sources = append(sources, s)
	}
	slices.Sort(sources)
	return fmt.Errorf("client: vault %s: %w: %w; sources read: %s. A host that keeps serving an old checkpoint could be hiding a revocation. "+
		"Ask the log's operator to keep its witnessing fresh (`coffer-release refresh`), pin a log URL that serves it "+
		"(`coffer log pin FILE --url URL`), or use the vault unverified for this run with --insecure",
		strconv.Quote(name), ErrStaleLog, run.stale, strings.Join(sources, ", "))
}
