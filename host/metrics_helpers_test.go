package host

import (
	"testing"

	"github.com/fxamacker/cbor/v2"
	dto "github.com/prometheus/client_model/go"
)

// cborMarshal encodes v deterministically, as protocol messages must be.
func cborMarshal(v any) ([]byte, error) {
	em, err := cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		return nil, err
	}
	return em.Marshal(v)
}

// metricValue finds one series in the server's registry.
func metricValue(t testing.TB, s *Server, name string, labels map[string]string) (*dto.Metric, bool) {
	t.Helper()
	mfs, err := s.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue next
				}
			}
			return m, true
		}
	}
	return nil, false
}

func testutilCounter(t testing.TB, s *Server, name string, labels map[string]string) float64 {
	t.Helper()
	m, ok := metricValue(t, s, name, labels)
	if !ok {
		return 0
	}
	return m.GetCounter().GetValue()
}

func testutilGauge(t testing.TB, s *Server, name string, labels map[string]string) float64 {
	t.Helper()
	m, ok := metricValue(t, s, name, labels)
	if !ok {
		return -1
	}
	return m.GetGauge().GetValue()
}
