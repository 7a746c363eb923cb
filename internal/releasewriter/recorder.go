package releasewriter

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
)

// witnessRecorder wraps the HTTP client tessera uses to reach witnesses
// and remembers each witness's last answer, so that a checkpoint left
// unwitnessed is reported with the witnesses that did not cosign it and
// why (tessera only logs it).
type witnessRecorder struct {
	base http.RoundTripper
	mu   sync.Mutex
	last map[string]*witnessAnswer // by add-checkpoint URL
}

type witnessAnswer struct {
	name, url string
	answered  bool // a 200 with a body, last time
	why       string
}

func newWitnessRecorder(base http.RoundTripper, names map[string]string) *witnessRecorder {
	if base == nil {
		base = http.DefaultTransport
	}
	r := &witnessRecorder{base: base, last: map[string]*witnessAnswer{}}
	for url, name := range names {
		r.last[url] = &witnessAnswer{name: name, url: url, why: "not contacted yet"}
	}
	return r
}

func (r *witnessRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.base.RoundTrip(req)
	url := req.URL.String()
	r.mu.Lock()
	defer r.mu.Unlock()
	a := r.last[url]
	if a == nil {
		return resp, err
	}
	switch {
	case err != nil:
		a.answered, a.why = false, err.Error()
	case resp.StatusCode == http.StatusConflict && a.answered:
		// tlog-witness's 409: the witness already holds a newer tree than
		// the old size it was sent (it cosigned a checkpoint moments ago,
		// and tessera republished); tessera retries from its size. A step
		// of the protocol, not a refusal: its last cosignature stands.
	case resp.StatusCode != http.StatusOK:
		// Keep the start of the body for the report, and give it back.
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(b))
		a.answered, a.why = false, fmt.Sprintf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(printable(b)))
	default:
		a.answered, a.why = true, ""
	}
	return resp, err
}

// silent lists the witnesses whose last answer was not a cosignature.
func (r *witnessRecorder) silent() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, a := range r.last {
		if !a.answered {
			out = append(out, fmt.Sprintf("%s (%s): %s", a.name, a.url, a.why))
		}
	}
	sort.Strings(out)
	if len(out) == 0 {
		return "every witness answered, but the cosignatures did not make a quorum"
	}
	return "no cosignature from " + strings.Join(out, "; ")
}

func printable(b []byte) string {
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\t' {
			return ' '
		}
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, string(b))
}
