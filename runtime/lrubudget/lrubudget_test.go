package lrubudget

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

func TestEvictsLeastRecentlyUsed(t *testing.T) {
	x := New(100)
	for _, k := range []string{"a", "b", "c"} {
		if ev := x.Add(k, 30); ev != nil {
			t.Fatalf("add %s evicted %v within the budget", k, ev)
		}
	}
	if !x.Touch("a") { // b is now the oldest
		t.Fatal("touch a: not held")
	}
	if ev := x.Add("d", 30); !slices.Equal(ev, []string{"b"}) {
		t.Fatalf("evicted %v, want [b]", ev)
	}
	if x.Has("b") || !x.Has("a") || x.Used() != 90 || x.Len() != 3 {
		t.Fatalf("after eviction: used %d len %d", x.Used(), x.Len())
	}
	if ev := x.Add("e", 75); !slices.Equal(ev, []string{"c", "a", "d"}) {
		t.Fatalf("evicted %v, want [c a d]", ev)
	}
	if x.Used() != 75 {
		t.Fatalf("used %d, want 75", x.Used())
	}
}

func TestReplaceAndRemove(t *testing.T) {
	x := New(100)
	x.Add("a", 40)
	x.Add("a", 60) // a rebuilt entry replaces its old size
	if x.Used() != 60 || x.Len() != 1 {
		t.Fatalf("used %d len %d", x.Used(), x.Len())
	}
	x.Remove("a")
	x.Remove("missing")
	if x.Used() != 0 || x.Len() != 0 || x.Touch("a") {
		t.Fatal("remove left something")
	}
}

func TestNeverEvictsTheNewEntry(t *testing.T) {
	x := New(10)
	x.Add("small", 5)
	if ev := x.Add("huge", 50); !slices.Equal(ev, []string{"small"}) {
		t.Fatalf("evicted %v, want [small]", ev)
	}
	if !x.Has("huge") {
		t.Fatal("the entry just added was evicted")
	}
}

// Many distinct entries of varied sizes: the total never passes the budget
// after an Add returns, and what is kept is always the most recent.
func TestManyEntriesStayWithinBudget(t *testing.T) {
	const budget = 1000
	x := New(budget)
	for i := range 5000 {
		x.Add(fmt.Sprint(i), int64(1+i%97))
		if x.Used() > budget {
			t.Fatalf("after %d adds: used %d over budget %d", i+1, x.Used(), budget)
		}
	}
	if !x.Has("4999") || x.Has("0") {
		t.Fatal("kept the wrong entries")
	}
}

func TestLoadOrdersByLastUse(t *testing.T) {
	x := New(100)
	t0 := time.Unix(1_800_000_000, 0)
	// Found in directory order; "old" was used first, so it goes first.
	ev := x.Load([]Found{{"new", 40, t0.Add(2 * time.Hour)}, {"old", 40, t0}, {"mid", 40, t0.Add(time.Hour)}})
	if !slices.Equal(ev, []string{"old"}) {
		t.Fatalf("evicted %v, want [old]", ev)
	}
	if x.Has("old") || !x.Has("mid") || !x.Has("new") || x.Used() != 80 {
		t.Fatalf("after load: old %v mid %v new %v used %d", x.Has("old"), x.Has("mid"), x.Has("new"), x.Used())
	}
	// The least recently used of what is left is "mid".
	if ev := x.Add("next", 30); !slices.Equal(ev, []string{"mid"}) {
		t.Fatalf("next add evicted %v, want [mid]", ev)
	}
}
