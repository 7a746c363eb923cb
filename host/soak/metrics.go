package soak

import (
	"bufio"
	"cmp"
	"io"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// metricsSnapshot is cofferd's /metrics, series (name with labels, as
// printed) to value.
type metricsSnapshot map[string]float64

var seriesLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$`)

// scrapeMetrics reads cofferd's Prometheus text; nil if it cannot.
func scrapeMetrics(url string) metricsSnapshot {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url + "/metrics")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	return parseMetrics(resp.Body)
}

func parseMetrics(r io.Reader) metricsSnapshot {
	m := metricsSnapshot{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if g := seriesLine.FindStringSubmatch(sc.Text()); g != nil {
			if v, err := strconv.ParseFloat(g[2], 64); err == nil {
				m[g[1]] = v
			}
		}
	}
	return m
}

// sum adds the series of name whose labels contain every one of want
// (each `key="value"`).
func (m metricsSnapshot) sum(name string, want ...string) float64 {
	total := 0.0
	for k, v := range m {
		if k != name && !strings.HasPrefix(k, name+"{") {
			continue
		}
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(k, w)
		}
		if ok {
			total += v
		}
	}
	return total
}

// delta is m − before for one sum.
func delta(before, after metricsSnapshot, name string, want ...string) float64 {
	return after.sum(name, want...) - before.sum(name, want...)
}

// histogramQuantile estimates quantile q of cofferd_request_seconds for
// one request type over the interval between two snapshots, interpolating
// linearly inside a bucket as Prometheus's histogram_quantile does.
func histogramQuantile(before, after metricsSnapshot, typ string, q float64) float64 {
	prefix := `cofferd_request_seconds_bucket{type="` + typ + `",le="`
	type bucket struct{ le, count float64 }
	var bs []bucket
	for k, v := range after {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		leText := strings.TrimSuffix(strings.TrimPrefix(k, prefix), `"}`)
		le, err := strconv.ParseFloat(leText, 64)
		if leText == "+Inf" {
			le, err = math.Inf(1), nil
		}
		if err == nil {
			bs = append(bs, bucket{le, v - before[k]})
		}
	}
	slices.SortFunc(bs, func(a, b bucket) int { return cmp.Compare(a.le, b.le) })
	if len(bs) == 0 || bs[len(bs)-1].count == 0 {
		return math.NaN()
	}
	rank := q * bs[len(bs)-1].count
	lower, below := 0.0, 0.0
	for _, b := range bs {
		if b.count >= rank {
			if math.IsInf(b.le, 1) {
				return lower
			}
			return lower + (b.le-lower)*(rank-below)/(b.count-below)
		}
		lower, below = b.le, b.count
	}
	return lower
}
