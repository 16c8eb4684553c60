package main

import (
	"testing"
	"time"
)

func TestPercentiles(t *testing.T) {
	runs := []time.Duration{5, 1, 4, 2, 3}
	if m, p := percentiles(runs); m != 3 || p != 5 {
		t.Fatalf("median %v p95 %v", m, p)
	}
	if m, _ := percentiles([]time.Duration{4, 1, 3, 2}); m != 2 {
		t.Fatalf("even median %v", m)
	}
	many := make([]time.Duration, 100)
	for i := range many {
		many[i] = time.Duration(i + 1)
	}
	if _, p := percentiles(many); p != 95 {
		t.Fatalf("p95 of 1..100 = %v", p)
	}
	if r := stats("x", []time.Duration{10, 10}, []time.Duration{20, 20}, "b"); r.Ratio != 0.5 {
		t.Fatalf("ratio %v", r.Ratio)
	}
}

func TestServerTimingParses(t *testing.T) {
	got := serverTiming("parse;dur=0.052, task;dur=61.5, total;dur=120")
	if got["parse"] != 52*time.Microsecond || got["task"] != 61500*time.Microsecond || got["total"] != 120*time.Millisecond || len(got) != 3 {
		t.Fatalf("%v", got)
	}
	if len(serverTiming("")) != 0 || len(serverTiming("junk, x;dur=nope")) != 0 {
		t.Fatal("junk parsed")
	}
}
