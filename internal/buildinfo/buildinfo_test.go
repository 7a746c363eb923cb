package buildinfo

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	bi := &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Path: "github.com/cofferhsm/coffer", Version: "v1.2.0"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.modified", Value: "true"}}}
	i := FromBuildInfo(bi)
	if i != (Info{Version: "v1.2.0", Revision: "0123456789abcdef0123", Modified: true, GoVersion: "go1.26.0"}) {
		t.Fatalf("%+v", i)
	}
	if s := i.String(); !strings.HasPrefix(s, "v1.2.0 (revision 0123456789ab, modified) go1.26.0 ") {
		t.Fatalf("%q", s)
	}
	// A clean tree says so by saying nothing; an unstamped build says the
	// revision is unknown rather than inventing one.
	bi.Settings[1].Value = "false"
	if s := FromBuildInfo(bi).String(); strings.Contains(s, "modified") {
		t.Fatalf("%q", s)
	}
	bi.Settings = nil
	bi.Main.Version = "(devel)"
	if s := FromBuildInfo(bi).String(); !strings.HasPrefix(s, "(devel) (revision unknown) go1.26.0") {
		t.Fatalf("%q", s)
	}
}
