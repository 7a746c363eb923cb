package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/cofferhsm/coffer/internal/notekey"
	"github.com/cofferhsm/coffer/internal/releasewriter"
	"github.com/cofferhsm/coffer/protocol/releaselog"
)

// witnessFlags collects repeated -witness VKEY=URL (URL optional where
// only the policy is wanted). A vkey holds no "=http", so the URL starts
// at its first occurrence.
type witnessFlags struct {
	keys []string
	urls map[string]string
}

func (w *witnessFlags) String() string { return strings.Join(w.keys, ",") }
func (w *witnessFlags) Set(s string) error {
	key, url := s, ""
	if i := strings.Index(s, "=http"); i >= 0 {
		key, url = s[:i], s[i+1:]
	}
	if key == "" {
		return fmt.Errorf("want VKEY=URL, got %q", s)
	}
	if w.urls == nil {
		w.urls = map[string]string{}
	}
	if _, dup := w.urls[key]; dup {
		return fmt.Errorf("witness %q given twice", key)
	}
	w.keys = append(w.keys, key)
	w.urls[key] = url
	return nil
}

// policyFlags are the flags that make the log's policy: the release key
// and the witnesses with their quorum.
type policyFlags struct {
	key       *string
	witnesses witnessFlags
	quorum    *int
}

func addPolicyFlags(fs *flag.FlagSet) *policyFlags {
	p := &policyFlags{
		key:    fs.String("key", "", "the release key file (from keygen)"),
		quorum: fs.Int("quorum", 0, "how many witnesses must cosign each checkpoint"),
	}
	fs.Var(&p.witnesses, "witness", "a witness: VKEY=URL (its cosignature/v1 key and tlog-witness base URL); repeat")
	return p
}

// policy reads the key and returns the policy and the key's signer.
func (p *policyFlags) policy() (*releaselog.Policy, note.Signer, error) {
	if *p.key == "" {
		return nil, nil, errors.New("-key is required")
	}
	skey, err := notekey.Read(*p.key)
	if err != nil {
		return nil, nil, err
	}
	vkey, err := notekey.VerifierKey(skey)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", *p.key, err)
	}
	signer, err := notekey.Signer(*p.key)
	if err != nil {
		return nil, nil, err
	}
	pol := &releaselog.Policy{Origin: signer.Name(), LogKey: vkey, Witnesses: p.witnesses.keys, Quorum: *p.quorum}
	if err := pol.Check(); err != nil {
		return nil, nil, err
	}
	return pol, signer, nil
}

// logFlags are policyFlags plus the log's folder and timing.
type logFlags struct {
	*policyFlags
	dir      *string
	interval *time.Duration
	timeout  *time.Duration
}

func addLogFlags(fs *flag.FlagSet) *logFlags {
	return &logFlags{
		policyFlags: addPolicyFlags(fs),
		dir:         fs.String("log", "", "the log's folder (created on first use)"),
		interval:    fs.Duration("interval", releasewriter.DefaultCheckpointInterval, "checkpoint interval"),
		timeout:     fs.Duration("timeout", 0, "how long to wait for the witnesses (default: one interval and two witnessing rounds)"),
	}
}

// open opens the log for writing.
func (f *logFlags) open(ctx context.Context) (*releasewriter.Log, error) {
	return f.openWith(ctx, nil)
}

// openWith is open with the writer's configuration adjusted by set.
func (f *logFlags) openWith(ctx context.Context, set func(*releasewriter.Config)) (*releasewriter.Log, error) {
	if *f.dir == "" {
		return nil, errors.New("-log is required")
	}
	pol, signer, err := f.policy()
	if err != nil {
		return nil, err
	}
	for _, k := range pol.Witnesses {
		if f.witnesses.urls[k] == "" {
			return nil, fmt.Errorf("witness %s has no URL (-witness VKEY=URL)", k)
		}
	}
	cfg := releasewriter.Config{
		Dir: *f.dir, Signer: signer, Policy: pol, WitnessURLs: f.witnesses.urls,
		CheckpointInterval: *f.interval, PublishTimeout: *f.timeout,
	}
	if set != nil {
		set(&cfg)
	}
	return releasewriter.Open(ctx, cfg)
}

// readPolicy reads a policy file (the text `policy` prints).
func readPolicy(path string) (*releaselog.Policy, error) {
	if path == "" {
		return nil, errors.New("-policy is required")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return releaselog.ParsePolicy(b)
}
