// Package buildinfo says what a Coffer binary was built from, as the Go
// toolchain recorded it (runtime/debug.ReadBuildInfo): the main module's
// version, the version-control revision and whether the tree had
// uncommitted changes (when the build stamped them: `go build` in a git
// checkout does, unless -buildvcs=false), and the Go version. Every
// command prints it for --version; cofferd also exports it as a metric.
package buildinfo

import (
	"runtime"
	"runtime/debug"
	"strings"
)

// Info is one binary's build.
type Info struct {
	Version   string // the main module's version: a tag, a pseudo-version, or "(devel)" for a build from a checkout
	Revision  string // vcs.revision: the commit, "" when the build did not stamp it
	Modified  bool   // vcs.modified: the tree had uncommitted changes
	GoVersion string // the toolchain, e.g. go1.26.0
}

// Read returns this binary's build information.
func Read() Info {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return Info{Version: "(unknown)", GoVersion: runtime.Version()}
	}
	return FromBuildInfo(bi)
}

// FromBuildInfo picks what Info says out of a build's record.
func FromBuildInfo(bi *debug.BuildInfo) Info {
	i := Info{Version: bi.Main.Version, GoVersion: bi.GoVersion}
	if i.Version == "" {
		i.Version = "(unknown)"
	}
	if i.GoVersion == "" {
		i.GoVersion = runtime.Version()
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			i.Revision = s.Value
		case "vcs.modified":
			i.Modified = s.Value == "true"
		}
	}
	return i
}

// String is the version line's text after the command's name:
// "v1.2.0 (revision 0123456789ab, modified) go1.26.0 linux/amd64".
func (i Info) String() string {
	var b strings.Builder
	b.WriteString(i.Version)
	switch {
	case i.Revision != "":
		rev := i.Revision
		if len(rev) > 12 {
			rev = rev[:12]
		}
		b.WriteString(" (revision " + rev)
		if i.Modified {
			b.WriteString(", modified")
		}
		b.WriteString(")")
	default:
		b.WriteString(" (revision unknown)")
	}
	b.WriteString(" " + i.GoVersion + " " + runtime.GOOS + "/" + runtime.GOARCH)
	return b.String()
}

// Line is what NAME --version prints: the name and String.
func Line(name string) string { return name + " " + Read().String() + "\n" }

// IsVersionFlag reports whether arg asks for the version: --version,
// -version or the command "version".
func IsVersionFlag(arg string) bool {
	return arg == "--version" || arg == "-version" || arg == "version"
}
