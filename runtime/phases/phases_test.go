package phases

import (
	"context"
	"testing"
	"time"
)

func TestPhasesAreContiguous(t *testing.T) {
	t0 := time.Unix(1000, 0)
	r := New(t0)
	ctx := With(context.Background(), r)
	r.MarkAt("parse", t0.Add(1*time.Millisecond))
	r.MarkAt("run", t0.Add(5*time.Millisecond))
	r.MarkAt("parse", t0.Add(5500*time.Microsecond)) // again: adds to parse
	r.MarkAt("late", t0.Add(4*time.Millisecond))     // before the last mark: nothing
	Mark(context.Background(), "ignored")            // no recorder: nothing
	list, total := r.Phases()
	if total != 5500*time.Microsecond {
		t.Fatalf("total %v", total)
	}
	want := []Phase{{"parse", 1500 * time.Microsecond}, {"run", 4 * time.Millisecond}, {"late", 0}}
	if len(list) != len(want) {
		t.Fatalf("phases %v", list)
	}
	var sum time.Duration
	for i, p := range list {
		if p != want[i] {
			t.Errorf("phase %d: %v, want %v", i, p, want[i])
		}
		sum += p.Dur
	}
	if sum != total {
		t.Errorf("phases add up to %v, total %v", sum, total)
	}
	if got := r.Header(); got != "parse;dur=1.500, run;dur=4.000, late;dur=0.000, total;dur=5.500" {
		t.Errorf("header %q", got)
	}
	if got := r.LogValue(); got != "parse=1.500 run=4.000 late=0.000" {
		t.Errorf("log value %q", got)
	}
	Mark(ctx, "after")
	if list, _ := r.Phases(); list[len(list)-1].Name != "after" {
		t.Errorf("Mark through the context: %v", list)
	}
}
