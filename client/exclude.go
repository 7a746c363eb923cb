package client

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Excludes are patterns of files a backup leaves out on purpose (the CLI's
// --exclude and --exclude-file; README.md, "Leaving files out"). Each
// pattern is a glob of Go's path.Match (`*`, `?`, `[a-z]`, `\` escapes),
// one per path element, where an element `**` matches any number of
// elements, none included. A pattern
//
//   - without `/` is matched against every entry's base name (`*.tmp`,
//     `node_modules`);
//   - with a `/` inside is matched against the entry's path in the backup,
//     the one `coffer ls` shows and `coffer restore FILE PATH` takes
//     (`documents/cache`, `**/build/*.o`);
//   - beginning with `/` is matched against the entry's absolute path on
//     disk, as given on the command line made absolute, symlinks in it not
//     resolved (`/home/me/documents/tmp`).
//
// A trailing `/` is ignored. A folder that matches is left out with
// everything below it.
type Excludes struct {
	patterns []excludePattern
}

type excludePattern struct {
	text  string
	abs   bool     // matched against the path on disk
	base  bool     // matched against the base name
	elems []string // the pattern's elements (abs: after the leading "/")
}

// ParseExcludes checks patterns and returns their matcher; nil patterns
// give a matcher that matches nothing.
func ParseExcludes(patterns []string) (*Excludes, error) {
	x := &Excludes{}
	for _, text := range patterns {
		p := strings.TrimSuffix(text, "/")
		if p == "" {
			return nil, fmt.Errorf("exclude pattern %s: empty", QuoteName(text))
		}
		ep := excludePattern{text: text}
		switch {
		case strings.HasPrefix(p, "/"):
			ep.abs = true
			ep.elems = strings.Split(strings.TrimPrefix(p, "/"), "/")
		case strings.Contains(p, "/"):
			ep.elems = strings.Split(p, "/")
		default:
			ep.base = true
			ep.elems = []string{p}
		}
		var elems []string
		for _, el := range ep.elems {
			if _, err := path.Match(el, ""); err != nil {
				return nil, fmt.Errorf("exclude pattern %s: %w", QuoteName(text), err)
			}
			if el == "**" && len(elems) > 0 && elems[len(elems)-1] == "**" {
				continue // "**/**" is "**"
			}
			elems = append(elems, el)
		}
		ep.elems = elems
		x.patterns = append(x.patterns, ep)
	}
	return x, nil
}

// ReadExcludeFile reads patterns, one a line, from the file at p: leading
// and trailing white space is trimmed, and empty lines and lines beginning
// with `#` are skipped.
func ReadExcludeFile(p string) ([]string, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, nameErr(err)
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, len(b)+1)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, line)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", QuoteName(p), err)
	}
	return out, nil
}

// Match says which pattern, if any, leaves out the entry named name in the
// backup (slash-separated) that is at disk on the filesystem (absolute).
func (x *Excludes) Match(name, disk string) (pattern string, ok bool) {
	if x == nil {
		return "", false
	}
	for _, p := range x.patterns {
		var subject []string
		switch {
		case p.base:
			subject = []string{path.Base(name)}
		case p.abs:
			subject = strings.Split(strings.TrimPrefix(filepath.ToSlash(disk), "/"), "/")
		default:
			subject = strings.Split(name, "/")
		}
		if matchElems(p.elems, subject) {
			return p.text, true
		}
	}
	return "", false
}

// matchElems matches path elements against pattern elements, "**"
// matching any number of elements: m[j] says whether pat[i:] matches
// name[j:], for i from the end, so that no pattern takes more than
// len(pat)·len(name) element matches.
func matchElems(pat, name []string) bool {
	n := len(name)
	next := make([]bool, n+1)
	next[n] = true // the empty pattern matches only the empty name
	for i := len(pat) - 1; i >= 0; i-- {
		cur := make([]bool, n+1)
		for j := n; j >= 0; j-- {
			if pat[i] == "**" {
				cur[j] = next[j] || (j < n && cur[j+1])
			} else if j < n && next[j+1] {
				cur[j], _ = path.Match(pat[i], name[j])
			}
		}
		next = cur
	}
	return next[0]
}
