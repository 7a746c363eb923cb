package board

import (
	"os"
	"regexp"
	"strconv"
	"testing"
)

func TestLayoutDisjointInsideRAM(t *testing.T) {
	ram := Region{RAMStart, RAMSize}
	l := Layout()
	for name, r := range l {
		if r.Start < ram.Start || r.End() > ram.End() {
			t.Errorf("%s %#x-%#x outside RAM", name, r.Start, r.End())
		}
		if r.Start%(1<<20) != 0 || r.Size%(1<<20) != 0 {
			t.Errorf("%s is not aligned to 1 MiB MMU sections", name)
		}
		for other, o := range l {
			if name < other && r.Overlaps(o) {
				t.Errorf("%s overlaps %s", name, other)
			}
		}
	}
}

// The linker addresses in firmware/firmware.mk must match this layout.
func TestMakefileAgrees(t *testing.T) {
	b, err := os.ReadFile("../firmware/firmware.mk")
	if err != nil {
		t.Skipf("firmware.mk not found: %v", err)
	}
	want := map[string]uint64{
		"OS_TEXT":     OSText,
		"APPLET_TEXT": AppletText,
		"BOOT_TEXT":   BootText,
	}
	for name, v := range want {
		m := regexp.MustCompile(`(?m)^` + name + `\s*:?=\s*(0x[0-9a-fA-F]+)`).FindSubmatch(b)
		if m == nil {
			t.Errorf("firmware.mk does not set %s", name)
			continue
		}
		got, err := strconv.ParseUint(string(m[1]), 0, 64)
		if err != nil || got != v {
			t.Errorf("firmware.mk: %s = %s, layout.go says %#x", name, m[1], v)
		}
	}
}
