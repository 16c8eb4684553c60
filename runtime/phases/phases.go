// Package phases splits a request's time into named, back-to-back phases:
// the API starts a Recorder when a request arrives, every layer that works
// on it marks the end of what it just did (Mark), and the answer carries
// them as a Server-Timing header and in the request's log line. Phases are
// contiguous, so they add up to the time from arrival to the last mark.
package phases

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Phase is a named span of a request.
type Phase struct {
	Name string
	Dur  time.Duration
}

// Recorder holds the phases of one request.
type Recorder struct {
	mu     sync.Mutex
	start  time.Time
	last   time.Time
	phases []Phase
}

// New starts a recorder at start, the request's arrival.
func New(start time.Time) *Recorder { return &Recorder{start: start, last: start} }

type key struct{}

// With gives ctx the recorder r.
func With(ctx context.Context, r *Recorder) context.Context { return context.WithValue(ctx, key{}, r) }

// Mark ends the phase called name now, on the recorder of ctx (if any): the
// time since the last mark is name's. A name marked again adds to its time.
func Mark(ctx context.Context, name string) {
	if r, ok := ctx.Value(key{}).(*Recorder); ok {
		r.MarkAt(name, time.Now())
	}
}

// MarkAt ends the phase called name at now.
func (r *Recorder) MarkAt(name string, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now.Before(r.last) {
		now = r.last
	}
	d := now.Sub(r.last)
	r.last = now
	for i := range r.phases {
		if r.phases[i].Name == name {
			r.phases[i].Dur += d
			return
		}
	}
	r.phases = append(r.phases, Phase{Name: name, Dur: d})
}

// Phases are the phases marked so far and their total, from the start to the last mark.
func (r *Recorder) Phases() ([]Phase, time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Phase(nil), r.phases...), r.last.Sub(r.start)
}

// ms writes d in milliseconds with microseconds.
func ms(d time.Duration) string { return fmt.Sprintf("%.3f", float64(d.Microseconds())/1000) }

// Header is the Server-Timing value of the phases and their total:
// "lock;dur=0.012, run;dur=8.400, total;dur=8.412".
func (r *Recorder) Header() string {
	list, total := r.Phases()
	var b strings.Builder
	for _, p := range list {
		fmt.Fprintf(&b, "%s;dur=%s, ", p.Name, ms(p.Dur))
	}
	b.WriteString("total;dur=" + ms(total))
	return b.String()
}

// LogValue is the phases as one log attribute value: "lock=0.012 run=8.400".
func (r *Recorder) LogValue() string {
	list, _ := r.Phases()
	parts := make([]string, len(list))
	for i, p := range list {
		parts[i] = p.Name + "=" + ms(p.Dur)
	}
	return strings.Join(parts, " ")
}
