package logcheck

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/transparency-dev/tessera/api/layout"
	"github.com/transparency-dev/tessera/client"

	"github.com/cofferhsm/coffer/protocol/releaselog"
)

// Bounds on what an HTTPSource reads. Anything larger is not part of a
// Coffer release log, and is refused before it is read whole.
const (
	// MaxCheckpointResponse bounds a checkpoint (releaselog refuses one
	// over 8 KiB anyway).
	MaxCheckpointResponse = 16 << 10
	// MaxBundleResponse bounds an entry bundle: 256 entries, each a
	// 2-byte length and at most releaselog.MaxEntrySize bytes.
	MaxBundleResponse = layout.EntryBundleWidth * (2 + releaselog.MaxEntrySize)
	// RequestTimeout bounds each request an HTTPSource makes, on top of
	// the caller's context.
	RequestTimeout = 30 * time.Second
)

// HTTPSource reads a log published in the C2SP tlog-tiles layout under
// base: cofferd's /v1/log/ (API.md, "The release log") or the log's own
// address. hc nil means a client of its own. Nothing it reads is believed:
// Update verifies the checkpoint against the policy and the entries
// against the checkpoint.
func HTTPSource(base *url.URL, hc *http.Client) Source {
	b := *base
	if !strings.HasSuffix(b.Path, "/") {
		b.Path += "/"
		if b.RawPath != "" {
			b.RawPath += "/"
		}
	}
	if hc == nil {
		hc = &http.Client{Timeout: RequestTimeout}
	}
	return &httpSource{base: &b, hc: hc}
}

type httpSource struct {
	base *url.URL
	hc   *http.Client
}

// get fetches one file of the layout, at most max bytes. A 404 wraps
// os.ErrNotExist, as tessera's fetchers do, so that a partial bundle the
// log has since completed is looked for in full.
func (s *httpSource) get(ctx context.Context, path string, max int64) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, RequestTimeout)
	defer cancel()
	u := s.base.JoinPath(path)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	// A cache between here and the log must not answer with an old
	// checkpoint (it would be caught, but would stall the verifier).
	req.Header.Set("Cache-Control", "no-cache")
	resp, err := s.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, fmt.Errorf("%s: %w", u.Redacted(), os.ErrNotExist)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("%s: HTTP %d", u.Redacted(), resp.StatusCode)
	case resp.ContentLength > max:
		return nil, fmt.Errorf("%s: %d bytes, more than the %d a file of this kind may hold", u.Redacted(), resp.ContentLength, max)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", u.Redacted(), err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s: more than the %d bytes a file of this kind may hold", u.Redacted(), max)
	}
	return b, nil
}

func (s *httpSource) Checkpoint(ctx context.Context) ([]byte, error) {
	return s.get(ctx, layout.CheckpointPath, MaxCheckpointResponse)
}

// bundle fetches entry bundle i, partial of width p (0: full), falling
// back to the full bundle when the partial one is gone.
func (s *httpSource) bundle(ctx context.Context, i uint64, p uint8) ([]byte, error) {
	b, err := s.get(ctx, layout.EntriesPath(i, p), MaxBundleResponse)
	if p > 0 && errors.Is(err, os.ErrNotExist) {
		return s.get(ctx, layout.EntriesPath(i, 0), MaxBundleResponse)
	}
	return b, err
}

// Entries reads the bundles covering [from, to) of a tree of treeSize
// entries, and returns those entries' data. A bundle must hold exactly
// the entries the tree puts in it (a partial one its width, or a full
// one, which the log may have completed since); a short bundle is an
// error here, a wrong entry is caught by Update's root check.
func (s *httpSource) Entries(ctx context.Context, from, to, treeSize uint64) ([][]byte, error) {
	if from > to || to > treeSize {
		return nil, fmt.Errorf("entries %d to %d of a tree of %d", from, to, treeSize)
	}
	out := make([][]byte, 0, to-from)
	for ri := range layout.Range(from, to-from, treeSize) {
		eb, err := client.GetEntryBundle(ctx, s.bundle, ri.Index, treeSize)
		if err != nil {
			return nil, err
		}
		n, want := len(eb.Entries), layout.EntryBundleWidth
		if ri.Partial > 0 {
			want = int(ri.Partial)
		}
		if n != want && n != layout.EntryBundleWidth {
			return nil, fmt.Errorf("entry bundle %d holds %d entries, not the %d of a tree of %d", ri.Index, n, want, treeSize)
		}
		if uint(n) < ri.First+ri.N {
			return nil, fmt.Errorf("entry bundle %d holds %d entries, fewer than the %d needed", ri.Index, n, ri.First+ri.N)
		}
		out = append(out, eb.Entries[ri.First:ri.First+ri.N]...)
	}
	if uint64(len(out)) != to-from {
		return nil, fmt.Errorf("read %d entries for %d to %d", len(out), from, to)
	}
	return out, nil
}
