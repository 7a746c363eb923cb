package host

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
)

// logPrefix is where cofferd serves the release log (API.md, "The release
// log").
const logPrefix = "/v1/log/"

// Bounds on what cofferd serves from a log directory. A file over its
// bound is not a file of a Coffer release log, and is not served.
const (
	// maxCheckpointFile: a checkpoint is a few lines and one signature
	// line per witness (protocol/releaselog bounds it at 8 KiB).
	maxCheckpointFile = 16 << 10
	// maxHashTileFile: a full hash tile is 256 hashes of 32 bytes.
	maxHashTileFile = 256 * 32
	// maxEntryBundleFile: 256 entries, each a 2-byte length and at most
	// 2048 bytes (releaselog.MaxEntrySize), with room to spare; cofferd
	// does not link the release log's package, so the number is written
	// out here.
	maxEntryBundleFile = 1 << 20
)

// logFile is one file of the C2SP tlog-tiles layout, parsed from a URL
// path: the checkpoint, a hash tile (level, index, optional partial width)
// or an entry bundle (index, optional partial width).
type logFile struct {
	kind    logFileKind
	level   uint64 // hash tiles: 0 to 63
	index   uint64
	partial uint64 // 0: full; else 1 to 255 entries or hashes
}

type logFileKind int

const (
	logCheckpoint logFileKind = iota + 1
	logHashTile
	logEntryBundle
)

// errNotLogFile: the path is not one of the log's files.
var errNotLogFile = errors.New("not a file of the tlog-tiles layout")

// parseLogPath reads the part of a URL path after /v1/log/. It accepts
// exactly the paths of the tlog-tiles layout in their one canonical
// spelling (checkpoint; tile/L/N[.p/W]; tile/entries/N[.p/W], with N in
// groups of three digits, x-prefixed but the last, no leading zero group):
// whatever it accepts is made only of digits, 'x', '/', ".p" and the
// fixed words, so it cannot name anything outside the log directory.
func parseLogPath(p string) (logFile, error) {
	if p == "checkpoint" {
		return logFile{kind: logCheckpoint}, nil
	}
	rest, ok := strings.CutPrefix(p, "tile/")
	if !ok {
		return logFile{}, errNotLogFile
	}
	var f logFile
	if r, ok := strings.CutPrefix(rest, "entries/"); ok {
		f.kind, rest = logEntryBundle, r
	} else {
		levelText, r, ok := strings.Cut(rest, "/")
		if !ok {
			return logFile{}, errNotLogFile
		}
		level, err := strconv.ParseUint(levelText, 10, 8)
		if err != nil || level > 63 || strconv.FormatUint(level, 10) != levelText {
			return logFile{}, errNotLogFile
		}
		f.kind, f.level, rest = logHashTile, level, r
	}
	indexText, widthText, partial := strings.Cut(rest, ".p/")
	index, err := parseTileIndex(indexText)
	if err != nil {
		return logFile{}, err
	}
	f.index = index
	if partial {
		w, err := strconv.ParseUint(widthText, 10, 8)
		if err != nil || w < 1 || w > 255 || strconv.FormatUint(w, 10) != widthText {
			return logFile{}, errNotLogFile
		}
		f.partial = w
	}
	if f.path() != p {
		return logFile{}, errNotLogFile // a second spelling of a file
	}
	return f, nil
}

// parseTileIndex reads a tile index N: "067", "x001/x234/067".
func parseTileIndex(s string) (uint64, error) {
	groups := strings.Split(s, "/")
	if len(groups) > 7 { // 2^64 has 20 digits
		return 0, errNotLogFile
	}
	var n uint64
	for i, g := range groups {
		if i < len(groups)-1 {
			var ok bool
			if g, ok = strings.CutPrefix(g, "x"); !ok {
				return 0, errNotLogFile
			}
		}
		if len(g) != 3 || strings.Trim(g, "0123456789") != "" {
			return 0, errNotLogFile
		}
		d, _ := strconv.ParseUint(g, 10, 16)
		if n > (^uint64(0)-d)/1000 {
			return 0, errNotLogFile
		}
		n = n*1000 + d
	}
	return n, nil
}

// path is the file's one canonical path in the layout, relative to the
// log's root.
func (f logFile) path() string {
	var b strings.Builder
	switch f.kind {
	case logCheckpoint:
		return "checkpoint"
	case logHashTile:
		fmt.Fprintf(&b, "tile/%d/", f.level)
	case logEntryBundle:
		b.WriteString("tile/entries/")
	}
	n := fmt.Sprintf("%03d", f.index%1000)
	for rest := f.index / 1000; rest > 0; rest /= 1000 {
		n = fmt.Sprintf("x%03d/%s", rest%1000, n)
	}
	b.WriteString(n)
	if f.partial > 0 {
		fmt.Fprintf(&b, ".p/%d", f.partial)
	}
	return b.String()
}

func (f logFile) maxSize() int64 {
	switch f.kind {
	case logCheckpoint:
		return maxCheckpointFile
	case logHashTile:
		return maxHashTileFile
	}
	return maxEntryBundleFile
}

// cacheControl: the checkpoint changes with every append, so no cache may
// keep it; a full tile or bundle never changes; a partial one never
// changes either, but is deleted once its tile fills, so it is cached
// briefly.
func (f logFile) cacheControl() string {
	switch {
	case f.kind == logCheckpoint:
		return "no-cache, no-store, max-age=0"
	case f.partial == 0:
		return "public, max-age=31536000, immutable"
	}
	return "public, max-age=60"
}

// ReleaseLog serves a release log's directory, as tessera's POSIX driver
// writes it (firmware/cmd/coffer-release), read-only. It verifies nothing:
// clients and monitors verify every byte against their pinned policy
// (client/logcheck). Create it with OpenReleaseLog; Config.ReleaseLog
// mounts it under /v1/log/.
type ReleaseLog struct {
	root *os.Root
}

// OpenReleaseLog opens dir. Files are opened through an os.Root on it, so
// no path, symbolic link or ".." reaches outside it.
func OpenReleaseLog(dir string) (*ReleaseLog, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("release log: %w", err)
	}
	return &ReleaseLog{root: root}, nil
}

// Close closes the directory.
func (l *ReleaseLog) Close() error { return l.root.Close() }

// errLogFileTooLarge: a file of the layout's name over its bound.
var errLogFileTooLarge = errors.New("larger than a file of a Coffer release log can be")

// read reads a file of the layout: a regular file (not a link, a directory
// or a device), within its bound.
func (l *ReleaseLog) read(f logFile) ([]byte, error) {
	name := f.path()
	info, err := l.root.Lstat(name)
	if err != nil {
		return nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: %w (a %v)", name, os.ErrNotExist, info.Mode().Type())
	}
	if info.Size() > f.maxSize() {
		return nil, fmt.Errorf("%s: %w", name, errLogFileTooLarge)
	}
	file, err := l.root.Open(name)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	// The name may have been replaced between Lstat and Open: what was
	// opened must be the regular file that was checked.
	if opened, err := file.Stat(); err != nil || !os.SameFile(info, opened) {
		return nil, fmt.Errorf("%s: %w (replaced while opening)", name, os.ErrNotExist)
	}
	b, err := io.ReadAll(io.LimitReader(file, f.maxSize()+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > f.maxSize() {
		return nil, fmt.Errorf("%s: %w", name, errLogFileTooLarge)
	}
	return b, nil
}

// ServeHTTP answers GET and HEAD of /v1/log/ followed by a path of the
// layout.
func (l *ReleaseLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	l.serve(w, r, &outcome{typ: "log"})
}

func (l *ReleaseLog) serve(w http.ResponseWriter, r *http.Request, o *outcome) {
	rest, ok := strings.CutPrefix(r.URL.Path, logPrefix)
	var f logFile
	var err error
	if ok && r.URL.RawPath == "" { // no escaped spelling of a path
		f, err = parseLogPath(rest)
	}
	if !ok || r.URL.RawPath != "" || err != nil {
		o.status = http.StatusNotFound
		writeError(w, o.status, "no such file in the release log", "")
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		o.status = http.StatusMethodNotAllowed
		writeError(w, o.status, "method not allowed", "")
		return
	}
	if l == nil {
		o.status = http.StatusNotFound
		writeError(w, o.status, "this cofferd serves no release log", "")
		return
	}
	body, err := l.read(f)
	switch {
	case errors.Is(err, os.ErrNotExist):
		o.status = http.StatusNotFound
		writeError(w, o.status, "no such file in the release log", "")
		return
	case err != nil:
		o.status, o.note = http.StatusInternalServerError, err.Error()
		writeError(w, o.status, "the release log could not be read on this cofferd", "")
		return
	}
	ct := "application/octet-stream"
	if f.kind == logCheckpoint {
		ct = "text/plain; charset=utf-8"
	}
	o.status = http.StatusOK
	w.Header().Set("Content-Type", ct)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", f.cacheControl())
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	w.Write(body)
}
