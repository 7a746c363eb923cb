package host

import (
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/cofferhsm/coffer/internal/buildinfo"
)

// metrics are cofferd's Prometheus series, on a registry of its own. Their
// names are part of API.md.
type metrics struct {
	reg *prometheus.Registry

	requests       *prometheus.CounterVec   // type, code
	requestSeconds *prometheus.HistogramVec // type
	vaultErrors    *prometheus.CounterVec   // device, code
	deviceFailures *prometheus.CounterVec   // device, reason
	lockouts       prometheus.Counter
	rateLimited    prometheus.Counter
	connRefused    prometheus.Counter
	frontAccounts  prometheus.Counter
	bucketsPruned  prometheus.Counter
	anchorWrites   *prometheus.GaugeVec // device
	storeSequence  *prometheus.GaugeVec // device
	records        *prometheus.GaugeVec // device
	recordCapacity *prometheus.GaugeVec // device

	// series holds each (type, code) pair's request series once resolved
	// (seriesKey → *requestSeries), so that a request costs no label
	// hashing, no lookup under the vectors' locks and no status rendering.
	// Its size is bounded as the vectors' are: the types are fixed names
	// or protocol types that ParseRoute allowed, the codes cofferd's own.
	series sync.Map
}

type seriesKey struct {
	typ  string
	code int
}

// requestSeries is what one answered request updates.
type requestSeries struct {
	count   prometheus.Counter
	seconds prometheus.Observer
}

// request returns the series of requests of type typ answered with code.
func (m *metrics) request(typ string, code int) *requestSeries {
	k := seriesKey{typ, code}
	if v, ok := m.series.Load(k); ok {
		return v.(*requestSeries)
	}
	v, _ := m.series.LoadOrStore(k, &requestSeries{
		count:   m.requests.WithLabelValues(typ, strconv.Itoa(code)),
		seconds: m.requestSeconds.WithLabelValues(typ),
	})
	return v.(*requestSeries)
}

func newMetrics(s *Server) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cofferd_requests_total",
			Help: "HTTP requests answered, by vault message type and HTTP status.",
		}, []string{"type", "code"}),
		requestSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cofferd_request_seconds",
			Help:    "Time to answer an HTTP request, by vault message type.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"type"}),
		vaultErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cofferd_vault_errors_total",
			Help: "Error replies relayed from a vault, by device and protocol error code.",
		}, []string{"device", "code"}),
		deviceFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cofferd_device_failures_total",
			Help: "Requests cofferd could not get answered, by device and reason (queue_full, queue_timeout, disconnected, timeout, error).",
		}, []string{"device", "reason"}),
		lockouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cofferd_lockouts_total",
			Help: "Login-start replies relayed whose receipt says the record is locked.",
		}),
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cofferd_rate_limited_total",
			Help: "Login starts refused by the per-account rate limit.",
		}),
		connRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cofferd_connections_refused_total",
			Help: "HTTP connections answered 503 and closed because -max-conns were open.",
		}),
		frontAccounts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cofferd_front_accounts_created_total",
			Help: "Accounts this host made at a fronted user's first request (front listener).",
		}),
		bucketsPruned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cofferd_buckets_pruned_total",
			Help: "Rate-limit buckets this host removed from the state store as idle long enough to be full.",
		}),
		anchorWrites: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cofferd_anchor_writes",
			Help: "The vault's monotonic anchor write counter (RPMB wear), from its signed status, polled.",
		}, []string{"device"}),
		storeSequence: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cofferd_store_sequence",
			Help: "The vault's store commit sequence, from its signed status, polled.",
		}, []string{"device"}),
		records: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cofferd_device_records",
			Help: "Records in the vault's store, from its signed status, polled.",
		}, []string{"device"}),
		recordCapacity: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cofferd_device_record_capacity",
			Help: "The vault's estimate of the records its store holds when full, from its signed status, polled.",
		}, []string{"device"}),
	}
	bi := buildinfo.Read()
	rev := bi.Revision
	if rev == "" {
		rev = "unknown"
	}
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "cofferd_build_info",
		Help: "Always 1; its labels say what this cofferd was built from (cofferd --version).",
	}, []string{"version", "revision", "go_version"})
	build.WithLabelValues(bi.Version, rev, bi.GoVersion).Set(1)
	m.reg.MustRegister(build, m.requests, m.requestSeconds, m.vaultErrors, m.deviceFailures, m.lockouts,
		m.rateLimited, m.connRefused, m.frontAccounts, m.bucketsPruned, m.anchorWrites, m.storeSequence, m.records, m.recordCapacity, &deviceCollector{s},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// deviceCollector reports the live state of each device at scrape time.
type deviceCollector struct{ s *Server }

var (
	connectedDesc = prometheus.NewDesc("cofferd_device_connected",
		"1 when the vault device is connected.", []string{"device"}, nil)
	queueDesc = prometheus.NewDesc("cofferd_queue_depth",
		"Requests waiting for a place in flight to the device.", []string{"device"}, nil)
	inFlightDesc = prometheus.NewDesc("cofferd_in_flight",
		"Requests sent to the device and not yet answered.", []string{"device"}, nil)
	insecureDesc = prometheus.NewDesc("cofferd_device_insecure",
		"1 when the device is an INSECURE vault (software vault, emulator), from its identity bundle.", []string{"device"}, nil)
	connectsDesc = prometheus.NewDesc("cofferd_device_connects_total",
		"Connections made to the device.", []string{"device"}, nil)
)

func (c *deviceCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- connectedDesc
	ch <- queueDesc
	ch <- inFlightDesc
	ch <- insecureDesc
	ch <- connectsDesc
}

func (c *deviceCollector) Collect(ch chan<- prometheus.Metric) {
	for _, dq := range c.s.devices {
		name := dq.dev.Name()
		ch <- prometheus.MustNewConstMetric(connectedDesc, prometheus.GaugeValue, b2f(dq.dev.Connected()), name)
		ch <- prometheus.MustNewConstMetric(queueDesc, prometheus.GaugeValue, float64(dq.waiting.Load()), name)
		ch <- prometheus.MustNewConstMetric(inFlightDesc, prometheus.GaugeValue, float64(dq.inFlight.Load()), name)
		if ins, known := dq.insecure(); known {
			ch <- prometheus.MustNewConstMetric(insecureDesc, prometheus.GaugeValue, b2f(ins), name)
		}
		ch <- prometheus.MustNewConstMetric(connectsDesc, prometheus.CounterValue, float64(dq.info().Connects), name)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
