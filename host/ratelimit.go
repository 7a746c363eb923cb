package host

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// ParseRate reads a rate such as "10/m", "1/s", "100/h" or "0.5/s" as
// events per second. "0", "off" and "" mean no limit (0).
func ParseRate(s string) (float64, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "0" || s == "off" {
		return 0, nil
	}
	n, unit, ok := strings.Cut(s, "/")
	if !ok {
		return 0, fmt.Errorf("rate %q: want N/s, N/m or N/h", s)
	}
	v, err := strconv.ParseFloat(n, 64)
	if err != nil || v < 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, fmt.Errorf("rate %q: bad count", s)
	}
	var per time.Duration
	switch unit {
	case "s":
		per = time.Second
	case "m":
		per = time.Minute
	case "h":
		per = time.Hour
	default:
		return 0, fmt.Errorf("rate %q: unit must be s, m or h", s)
	}
	return v / per.Seconds(), nil
}

// retryAfter renders a wait as whole seconds for a Retry-After header,
// rounded up and at least 1.
func retryAfter(d time.Duration) string { return strconv.FormatInt(retrySeconds(d), 10) }

func retrySeconds(d time.Duration) int64 {
	s := int64(math.Ceil(d.Seconds()))
	if s < 1 {
		s = 1
	}
	return s
}
