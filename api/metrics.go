package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/servcraft/servcraftd/runtime"
)

// MetricsSource is what /metrics reads of the runtime at every scrape:
// counters since start, and the number of sessions now.
type MetricsSource interface {
	Stats() runtime.Stats
}

// DiskSource reads the state filesystem's room against the reserve.
type DiskSource interface {
	DiskStatus() (runtime.DiskStatus, error)
}

// latencyBuckets span a cached exec (a few ms) to a long install (minutes).
var latencyBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}

// metrics is the daemon's Prometheus registry, its own (not the global
// one), so two routers never share counters.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec   // route, method, status
	latency  *prometheus.HistogramVec // route, method
	ops      *prometheus.HistogramVec // operation
	limited  *prometheus.CounterVec   // limit
}

func newMetrics(src MetricsSource, dsk DiskSource) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "servcraft_http_requests_total",
			Help: "HTTP requests answered, by route (unmatched: no route), method (GET ... OPTIONS, else other) and status.",
		}, []string{"route", "method", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "servcraft_http_request_duration_seconds",
			Help:    "Time to answer HTTP requests, by route and method (streams and WebSockets: their whole life).",
			Buckets: latencyBuckets,
		}, []string{"route", "method"}),
		ops: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "servcraft_operation_duration_seconds",
			Help:    "Time of session operations answered with a 2xx: create, destroy, execute, shell, sync, install.",
			Buckets: latencyBuckets,
		}, []string{"operation"}),
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "servcraft_rate_limited_total",
			Help: "Requests refused with 429 by a limit: create, client_exec, session_exec, session_install, concurrency, lookup, terminal_open, terminals, held_client, held_session, listings_client, listings_session.",
		}, []string{"limit"}),
	}
	m.reg.MustRegister(m.requests, m.latency, m.ops, m.limited,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if src != nil {
		m.reg.MustRegister(runtimeCollector{src})
	}
	if dsk != nil {
		m.reg.MustRegister(diskCollector{dsk})
	}
	return m
}

// observe records one answered request.
func (m *metrics) observe(method, route, operation string, status int, d time.Duration) {
	label := route
	if label == "" {
		label = "unmatched" // any path: keep the label set bounded
	}
	m.requests.WithLabelValues(label, method, strconv.Itoa(status)).Inc()
	m.latency.WithLabelValues(label, method).Observe(d.Seconds())
	if operation != "" && status >= 200 && status < 300 {
		m.ops.WithLabelValues(operation).Observe(d.Seconds())
	}
}

func (m *metrics) rateLimited(limit string) { m.limited.WithLabelValues(limit).Inc() }

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// runtimeCollector turns the runtime's counters into metrics at each scrape.
type runtimeCollector struct{ src MetricsSource }

var (
	descActive = prometheus.NewDesc("servcraft_sessions_active",
		"Sessions in the store (running, being created or destroyed).", nil, nil)
	descCreates = prometheus.NewDesc("servcraft_session_creates_total",
		"Session creates, by outcome.", []string{"outcome"}, nil)
	descDestroys = prometheus.NewDesc("servcraft_session_destroys_total",
		"Session destroys through the API, by outcome.", []string{"outcome"}, nil)
	descReaps = prometheus.NewDesc("servcraft_session_reaps_total",
		"Sessions destroyed by the reaper, by reason.", []string{"reason"}, nil)
	descExecs = prometheus.NewDesc("servcraft_exec_results_total",
		"Runs (execute and shell), by result: ok, nonzero, timeout, oom, truncated, error.", []string{"result"}, nil)
	descInstalls = prometheus.NewDesc("servcraft_installs_total",
		"npm installs, by outcome.", []string{"outcome"}, nil)
	descCacheHits = prometheus.NewDesc("servcraft_registry_cache_hits_total",
		"npm tarballs served from the registry proxy's cache.", nil, nil)
	descCacheMisses = prometheus.NewDesc("servcraft_registry_cache_misses_total",
		"npm tarballs the registry proxy fetched from upstream.", nil, nil)
	descCacheBytes = prometheus.NewDesc("servcraft_registry_upstream_bytes_total",
		"Bytes the registry proxy read from the upstream registry.", nil, nil)
)

func (runtimeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descActive, descCreates, descDestroys, descReaps, descExecs,
		descInstalls, descCacheHits, descCacheMisses, descCacheBytes} {
		ch <- d
	}
}

func (r runtimeCollector) Collect(ch chan<- prometheus.Metric) {
	s := r.src.Stats()
	ch <- prometheus.MustNewConstMetric(descActive, prometheus.GaugeValue, float64(s.Active))
	for desc, byLabel := range map[*prometheus.Desc]map[string]uint64{
		descCreates: s.Creates, descDestroys: s.Destroys, descReaps: s.Reaps, descExecs: s.ExecResults, descInstalls: s.Installs,
	} {
		for label, n := range byLabel {
			ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(n), label)
		}
	}
	ch <- prometheus.MustNewConstMetric(descCacheHits, prometheus.CounterValue, float64(s.CacheHits))
	ch <- prometheus.MustNewConstMetric(descCacheMisses, prometheus.CounterValue, float64(s.CacheMisses))
	ch <- prometheus.MustNewConstMetric(descCacheBytes, prometheus.CounterValue, float64(s.CacheBytes))
}

// diskCollector reads the state filesystem's room at each scrape.
type diskCollector struct{ src DiskSource }

var (
	descDiskFree = prometheus.NewDesc("servcraft_state_disk_free_bytes",
		"Bytes free on the state filesystem (workspaces, store, caches).", nil, nil)
	descDiskTotal = prometheus.NewDesc("servcraft_state_disk_total_bytes",
		"Size of the state filesystem.", nil, nil)
	descDiskReserve = prometheus.NewDesc("servcraft_state_disk_reserve_bytes",
		"Bytes of the state filesystem a session create never takes (--disk-reserve plus what the caches may still grow by): the watermark.", nil, nil)
	descDiskLow = prometheus.NewDesc("servcraft_state_disk_low",
		"1 when free bytes are short of the reserve plus one workspace: new sessions answer 507 host_disk_full.", nil, nil)
	descWritten = prometheus.NewDesc("servcraft_workspaces_written_bytes",
		"What the workspaces hold, summed (bytes a fork shares with its source count in both), against the room in servcraft_state_disk_total_bytes (the pool's with the btrfs backend).", nil, nil)
	descWorkspaces = prometheus.NewDesc("servcraft_workspaces",
		"Workspace volumes on this node, by backend (image or btrfs).", []string{"backend"}, nil)
)

func (diskCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descDiskFree, descDiskTotal, descDiskReserve, descDiskLow, descWritten, descWorkspaces} {
		ch <- d
	}
}

func (d diskCollector) Collect(ch chan<- prometheus.Metric) {
	st, err := d.src.DiskStatus()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descDiskFree, err)
		return
	}
	low := 0.0
	if st.Low {
		low = 1
	}
	ch <- prometheus.MustNewConstMetric(descDiskFree, prometheus.GaugeValue, float64(st.FreeBytes))
	ch <- prometheus.MustNewConstMetric(descDiskTotal, prometheus.GaugeValue, float64(st.TotalBytes))
	ch <- prometheus.MustNewConstMetric(descDiskReserve, prometheus.GaugeValue, float64(st.ReserveBytes))
	ch <- prometheus.MustNewConstMetric(descDiskLow, prometheus.GaugeValue, low)
	ch <- prometheus.MustNewConstMetric(descWritten, prometheus.GaugeValue, float64(st.WrittenBytes))
	ch <- prometheus.MustNewConstMetric(descWorkspaces, prometheus.GaugeValue, float64(st.Workspaces), st.Backend)
}
