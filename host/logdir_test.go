package host

import (
	"bytes"
	"crypto/rand"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// logDirFixture is a release log directory as tessera's POSIX driver lays
// it out, with a secret beside it (outside) and traps inside: links, a
// directory and an oversized file at names of the layout, and the
// driver's private state.
type logDirFixture struct {
	dir    string
	files  map[string][]byte // served: path -> content
	secret []byte
}

func newLogDirFixture(t *testing.T) *logDirFixture {
	t.Helper()
	base := t.TempDir()
	f := &logDirFixture{dir: filepath.Join(base, "log"), files: map[string][]byte{}, secret: []byte("SECRET-OUTSIDE-THE-LOG")}
	random := func(n int) []byte { b := make([]byte, n); rand.Read(b); return b }
	f.files["checkpoint"] = []byte("releases.coffer.test\n300\nq9x2Kw==\n\n— releases.coffer.test AAAA\n")
	f.files["tile/0/000"] = random(8192)
	f.files["tile/0/001.p/44"] = random(44 * 32)
	f.files["tile/1/000.p/1"] = random(32)
	f.files["tile/0/x001/x234/067"] = random(8192)
	f.files["tile/entries/000"] = random(3000)
	f.files["tile/entries/001.p/44"] = random(500)
	f.files["tile/0/x018/x446/x744/x073/x709/x551/615"] = random(32) // the largest index there is
	write := func(name string, b []byte) {
		p := filepath.Join(f.dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, b := range f.files {
		write(name, b)
	}
	write(".state/treeState", f.secret)
	write("tile/0/005", bytes.Repeat([]byte{1}, maxHashTileFile+1)) // too large for a tile
	if err := os.WriteFile(filepath.Join(base, "secret"), f.secret, 0o600); err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(base, "outside")
	if err := os.MkdirAll(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, "000"), f.secret, 0o600); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{
		"tile/0/002":       "../../../secret",                 // a file outside
		"tile/0/003":       filepath.Join(base, "secret"),     // the same, absolute
		"tile/2":           "../../outside",                   // a directory outside: tile/2/000
		"tile/entries/002": "000",                             // a link inside: still not served
		"tile/3":           filepath.Join(f.dir, "tile", "0"), // a directory inside, by absolute path
	} {
		if err := os.Symlink(target, filepath.Join(f.dir, filepath.FromSlash(link))); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(f.dir, "tile", "0", "004"), 0o755); err != nil { // a directory at a tile's name
		t.Fatal(err)
	}
	return f
}

func logServer(t *testing.T, dir string) string {
	t.Helper()
	accounts, _, _ := testAccounts(t)
	cfg := Config{Devices: []Device{newStub("vault0")}, Store: accounts}
	if dir != "" {
		l, err := OpenReleaseLog(dir)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		cfg.ReleaseLog = l
	}
	_, hs := testServer(t, cfg)
	return hs.URL
}

func rawGet(t *testing.T, method, url string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Do not follow the mux's redirects of unclean paths: what cofferd
	// answers to the path as sent is what is checked.
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// TestReleaseLogServesTheLayoutsFilesExactly: every file of the layout is
// served byte for byte, the checkpoint uncached, full tiles immutable,
// partial ones briefly cacheable; HEAD without a body; nothing but GET and
// HEAD.
func TestReleaseLogServesTheLayoutsFilesExactly(t *testing.T) {
	f := newLogDirFixture(t)
	url := logServer(t, f.dir)
	for name, want := range f.files {
		resp, got := rawGet(t, http.MethodGet, url+"/v1/log/"+name)
		if resp.StatusCode != http.StatusOK || !bytes.Equal(got, want) {
			t.Errorf("GET %s: %d, %d bytes, want the file's %d", name, resp.StatusCode, len(got), len(want))
			continue
		}
		cc := resp.Header.Get("Cache-Control")
		switch {
		case name == "checkpoint":
			if !strings.Contains(cc, "no-cache") || !strings.Contains(cc, "no-store") || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
				t.Errorf("checkpoint: Cache-Control %q, Content-Type %q", cc, resp.Header.Get("Content-Type"))
			}
		case strings.Contains(name, ".p/"):
			if strings.Contains(cc, "immutable") || !strings.Contains(cc, "max-age=60") {
				t.Errorf("partial %s: Cache-Control %q", name, cc)
			}
		default:
			if !strings.Contains(cc, "immutable") || resp.Header.Get("Content-Type") != "application/octet-stream" {
				t.Errorf("full %s: Cache-Control %q", name, cc)
			}
		}
	}
	resp, body := rawGet(t, http.MethodHead, url+"/v1/log/checkpoint")
	if resp.StatusCode != http.StatusOK || len(body) != 0 || resp.ContentLength != int64(len(f.files["checkpoint"])) {
		t.Errorf("HEAD checkpoint: %d, %d bytes, length %d", resp.StatusCode, len(body), resp.ContentLength)
	}
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		if resp, _ := rawGet(t, m, url+"/v1/log/checkpoint"); resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s checkpoint: %d, Allow %q", m, resp.StatusCode, resp.Header.Get("Allow"))
		}
	}
}

// TestReleaseLogRefusesEveryOtherPath plays a client probing cofferd's log
// directory: traversal, escaped spellings, second spellings of a file,
// the driver's private state, links out of (and within) the directory, a
// directory at a file's name, a file over its bound. None is served, and
// the secret beside the log never appears in an answer.
func TestReleaseLogRefusesEveryOtherPath(t *testing.T) {
	f := newLogDirFixture(t)
	url := logServer(t, f.dir)
	for _, p := range []string{
		"", "/", "checkpoint/", "checkpoint.p/1", "Checkpoint", "checkpoint%00", "./checkpoint",
		".state/treeState", ".state/", "tile/", "tile/0", "tile/0/", "tile/entries", "tile/entries/",
		"../secret", "tile/../../secret", "tile/0/../../../secret", "tile/0/..%2f..%2f..%2fsecret",
		"%2e%2e/secret", "tile%2f0%2f000", "tile/0/%30%30%30", "tile//0/000", "tile/0//000",
		"tile/0/00", "tile/0/0000", "tile/0/x000/001", "tile/0/x1/000", "tile/0/x001/x234/67",
		"tile/0/001/x234", "tile/0/+01", "tile/0/ 01", "tile/0/1e2", "tile/0/0x1",
		"tile/64/000", "tile/00/000", "tile/-1/000", "tile/+0/000", "tile/x/000",
		"tile/0/000.p/0", "tile/0/000.p/256", "tile/0/000.p/08", "tile/0/000.p/", "tile/0/000.p",
		"tile/0/000.p/1/", "tile/0/000.q/1", "tile/0/001.p/44.p/1", "tile/entries/000.p/1/000",
		"tile/0/x999/x999/x999/x999/x999/x999/x999/999", "tile/0/x018/x446/x744/x073/x709/x551/616",
		"tile/entries/x1000/000",
		// Names of the layout that are links, a directory, too large:
		"tile/0/002", "tile/0/003", "tile/2/000", "tile/entries/002", "tile/3/000", "tile/0/004", "tile/0/005",
		// Names of the layout that do not exist:
		"tile/0/006", "tile/entries/001", "tile/entries/001.p/45",
	} {
		resp, body := rawGet(t, http.MethodGet, url+"/v1/log/"+p)
		if resp.StatusCode == http.StatusOK || bytes.Contains(body, f.secret) {
			t.Errorf("GET /v1/log/%s: %d, %d bytes (secret: %v)", p, resp.StatusCode, len(body), bytes.Contains(body, f.secret))
		}
		for _, content := range f.files {
			if len(body) > 0 && bytes.Equal(body, content) {
				t.Errorf("GET /v1/log/%s served a log file under another name", p)
			}
		}
	}
	// Straight to the handler, past the mux's cleaning of paths.
	l, err := OpenReleaseLog(f.dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, p := range []string{"/v1/log/../secret", "/v1/log/tile/0/../../../secret", "/v1/log/tile/2/000", "/v1/log//checkpoint"} {
		req, _ := http.NewRequest(http.MethodGet, "http://cofferd.test/", nil)
		req.URL.Path = p
		w := &recorder{header: http.Header{}}
		l.ServeHTTP(w, req)
		if w.status == http.StatusOK || bytes.Contains(w.body.Bytes(), f.secret) {
			t.Errorf("handler %s: %d, %d bytes", p, w.status, w.body.Len())
		}
	}
}

type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) WriteHeader(s int)           { r.status = s }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }

// TestReleaseLogNotConfigured: a cofferd without -log answers 404 to the
// log's paths, and the directory it was never given is not reachable.
func TestReleaseLogNotConfigured(t *testing.T) {
	url := logServer(t, "")
	for _, p := range []string{"checkpoint", "tile/0/000", "tile/entries/000"} {
		if resp, _ := rawGet(t, http.MethodGet, url+"/v1/log/"+p); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s without a log: %d", p, resp.StatusCode)
		}
	}
}

func TestParseLogPathRoundTrips(t *testing.T) {
	for p, want := range map[string]logFile{
		"checkpoint":                  {kind: logCheckpoint},
		"tile/0/000":                  {kind: logHashTile},
		"tile/63/999.p/255":           {kind: logHashTile, level: 63, index: 999, partial: 255},
		"tile/5/x001/x234/067.p/8":    {kind: logHashTile, level: 5, index: 1234067, partial: 8},
		"tile/entries/x001/000":       {kind: logEntryBundle, index: 1000},
		"tile/entries/x010/x000/001":  {kind: logEntryBundle, index: 10000001},
		"tile/entries/000.p/1":        {kind: logEntryBundle, partial: 1},
		"tile/entries/x999/999.p/200": {kind: logEntryBundle, index: 999999, partial: 200},
	} {
		got, err := parseLogPath(p)
		if err != nil || got != want || got.path() != p {
			t.Errorf("%s: %+v %v (path %q), want %+v", p, got, err, got.path(), want)
		}
	}
}

// FuzzParseLogPath: whatever parses is its own canonical path, made only
// of the layout's characters, never a traversal.
func FuzzParseLogPath(f *testing.F) {
	for _, s := range []string{"checkpoint", "tile/0/000", "tile/63/x001/x234/067.p/8", "tile/entries/x999/999.p/200",
		"tile/0/../x", "tile/entries/000.p/0", "tile/0/x018/x446/x744/x073/x709/x551/615", ".state/treeState", "tile/0/x000/001"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		lf, err := parseLogPath(p)
		if err != nil {
			return
		}
		if lf.path() != p {
			t.Fatalf("%q parsed as %+v, whose path is %q", p, lf, lf.path())
		}
		if strings.Contains(p, "..") || strings.Contains(p, "//") || strings.HasPrefix(p, "/") ||
			strings.Trim(p, "0123456789x/.pcheckointlsr") != "" {
			t.Fatalf("%q accepted", p)
		}
	})
}
