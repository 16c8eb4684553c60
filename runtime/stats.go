package runtime

import (
	"maps"
	"sync"
)

// Stats are the manager's counters since start, for metrics.
type Stats struct {
	Active      int               // sessions in the store
	Pooled      int               // warm containers waiting for a session
	Creates     map[string]uint64 // by outcome: ok, pool, existing, error, capacity, host_disk_full
	Destroys    map[string]uint64 // by outcome: ok, error
	Reaps       map[string]uint64 // by reason: idle, gone, error
	ExecResults map[string]uint64 // ok, nonzero, timeout, oom, truncated, error
	Installs    map[string]uint64 // ok, failed, not_found, upstream, timeout, error
	CacheHits   uint64            // registry proxy tarball cache
	CacheMisses uint64
	CacheBytes  uint64 // bytes fetched from the upstream registry
}

// counters is a set of named counters, safe for concurrent use.
type counters struct {
	mu sync.Mutex
	m  map[string]map[string]uint64
}

func (c *counters) inc(family, label string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]map[string]uint64{}
	}
	if c.m[family] == nil {
		c.m[family] = map[string]uint64{}
	}
	c.m[family][label]++
}

func (c *counters) get(family string) map[string]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.m[family])
}

// execOutcome names how a run ended, for the exec results counter.
func execOutcome(res ExecResult, err error) string {
	switch {
	case err != nil:
		return "error"
	case res.TimedOut:
		return "timeout"
	case res.OOMKilled:
		return "oom"
	case res.Truncated:
		return "truncated"
	case res.ExitCode != 0:
		return "nonzero"
	}
	return "ok"
}

// Stats returns the counters and the number of sessions now.
func (m *Manager) Stats() Stats {
	s := Stats{
		Creates:     m.counters.get("creates"),
		Destroys:    m.counters.get("destroys"),
		Reaps:       m.counters.get("reaps"),
		ExecResults: m.counters.get("exec"),
		Installs:    m.counters.get("installs"),
	}
	if list, err := m.db.List(); err == nil {
		for _, r := range list {
			switch KindOf(r.SessionID) {
			case KindPool:
				s.Pooled++
			case KindSession:
				s.Active++
			}
		}
	}
	if m.cfg.Registry != nil {
		hits, misses, bytes := m.cfg.Registry.Stats()
		s.CacheHits, s.CacheMisses, s.CacheBytes = uint64(hits), uint64(misses), uint64(bytes)
	}
	return s
}
