package client

import (
	"io/fs"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"
)

// QuoteName makes a file name safe to print: a name that is valid UTF-8 of
// printable characters (strconv.IsPrint: no control or format characters,
// so no newline, carriage return, terminal escape or bidirectional
// override) and does not begin with a double quote is returned as it is;
// any other is returned quoted with Go escapes (strconv.Quote), so that a
// name from a backup or from the filesystem can neither fake lines of
// output nor drive the terminal. Names in the errors and warnings of this
// package are already quoted; RestoreStats.Top holds them raw.
func QuoteName(name string) string {
	if plainName(name) {
		return name
	}
	return strconv.Quote(name)
}

func plainName(name string) bool {
	if strings.HasPrefix(name, `"`) {
		return false // would read as an escaped name
	}
	for i := 0; i < len(name); {
		r, size := utf8.DecodeRuneInString(name[i:])
		if r == utf8.RuneError && size == 1 || !strconv.IsPrint(r) {
			return false
		}
		i += size
	}
	return true
}

// quoteNames returns names, each through QuoteName, joined by ", ".
func quoteNames(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = QuoteName(n)
	}
	return strings.Join(q, ", ")
}

// nameErr returns err with the names in it quoted (QuoteName) when it is
// an *fs.PathError or *os.LinkError, as the os and path/filepath functions
// return: their messages hold the names raw. What err wraps stays
// reachable (errors.Is(nameErr(err), fs.ErrNotExist) holds as before).
func nameErr(err error) error {
	switch e := err.(type) {
	case *fs.PathError:
		if !plainName(e.Path) {
			return &fs.PathError{Op: e.Op, Path: QuoteName(e.Path), Err: e.Err}
		}
	case *os.LinkError:
		if !plainName(e.Old) || !plainName(e.New) {
			return &os.LinkError{Op: e.Op, Old: QuoteName(e.Old), New: QuoteName(e.New), Err: e.Err}
		}
	}
	return err
}
