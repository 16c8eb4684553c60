package runtime

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/servcraft/servcraftd/snapshots/templates"
)

func TestWarmPoolSeedType(t *testing.T) {
	p := newWarmPool(2)
	if got := p.starterType(); got != templates.Types()[0] {
		t.Fatalf("a new pool seeds %q, want the first template %q", got, templates.Types()[0])
	}
	p.asked("ts")
	if got := p.starterType(); got != "ts" {
		t.Fatalf("after a claim of ts the pool seeds %q", got)
	}
	for id, internal := range map[string]bool{"~pool-1": true, "~deps-abc": true, "user-1": false, "pool-1": false} {
		if IsInternal(id) != internal {
			t.Errorf("IsInternal(%q) = %v", id, !internal)
		}
	}
}

func TestActivityStaleLabels(t *testing.T) {
	clock := &fakeClock{t: t0}
	a := newActivity(clock.now, time.Minute)
	a.touch("a")
	a.relabel("b")
	a.relabel("a")
	got := a.takeStale()
	slices.Sort(got)
	if !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("stale %v", got)
	}
	if again := a.takeStale(); len(again) != 0 {
		t.Fatalf("taken twice: %v", again)
	}
	if at, ok := a.last("a"); !ok || !at.Equal(t0) {
		t.Fatalf("taking the stale labels keeps the activity: %v %v", at, ok)
	}
}

func TestBackgroundPrune(t *testing.T) {
	var bs backgrounds
	code := 0
	for i, running := range []bool{false, true, false, false} {
		info := Process{ID: string(rune('a' + i)), StartedAt: t0.Add(time.Duration(i) * time.Second), Running: running}
		if !running {
			at := t0.Add(time.Duration(10+i) * time.Second)
			info.ExitCode, info.ExitedAt = &code, &at
		}
		bs.add("s", newBackground(info, 16))
	}
	bs.add("other", newBackground(Process{ID: "z"}, 16))
	bs.prune("s", 1)
	var ids []string
	for _, p := range bs.list("s") {
		ids = append(ids, p.ID)
	}
	// b runs; of the ended a, c and d only d, the last to end, is kept.
	if !slices.Equal(ids, []string{"b", "d"}) || bs.running("s") != 1 {
		t.Fatalf("after prune: %v, %d running", ids, bs.running("s"))
	}
	if len(bs.list("other")) != 1 {
		t.Fatal("prune touched another session")
	}
	bs.forget("s")
	if len(bs.list("s")) != 0 {
		t.Fatal("forget")
	}
}

func TestRemoveUnfinishedLayers(t *testing.T) {
	none, _, _ := unitManager(t)
	if removed, err := removeUnfinishedLayers(none.cfg.DepCacheDir); err != nil || removed != nil {
		t.Fatalf("no cache: %v %v", removed, err)
	}
	cache := t.TempDir()
	m, _, _ := unitManager(t, func(c *Config) { c.DepCacheDir = cache })
	writeFiles(t, cache, map[string]string{".build-1/node_modules/x/index.js": "x", ".build-2/a": "", "done/a": ""})
	removed, err := removeUnfinishedLayers(m.cfg.DepCacheDir)
	slices.Sort(removed)
	if err != nil || !slices.Equal(removed, []string{".build-1", ".build-2"}) {
		t.Fatalf("removed %v %v", removed, err)
	}
	if left, _ := os.ReadDir(cache); len(left) != 1 || left[0].Name() != "done" {
		t.Fatalf("left %v", left)
	}
}

func TestRemoveStarterDeps(t *testing.T) {
	ws := t.TempDir()
	writeFiles(t, ws, map[string]string{"node_modules/x/index.js": "x", "package-lock.json": "{}", "package.json": "{}"})
	if err := removeStarterDeps(ws); err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(ws); len(left) != 1 || left[0].Name() != "package.json" {
		t.Fatalf("left %v", left)
	}
	if err := removeStarterDeps(ws); err != nil {
		t.Fatalf("nothing left to remove: %v", err)
	}
}

// TestHoldFIFOs: a shim opens an exec's FIFOs one after another, each open
// waiting for the other end; every open made while they are held goes
// through, those after the first included (a single open-and-close let the
// second block).
func TestHoldFIFOs(t *testing.T) {
	dir := t.TempDir()
	var fifos []string
	for _, name := range []string{"stdout", "stderr"} {
		fifo := filepath.Join(dir, "exec-1", name)
		if err := os.MkdirAll(filepath.Dir(fifo), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mkfifo(fifo, 0o600); err != nil {
			t.Fatal(err)
		}
		fifos = append(fifos, fifo)
	}
	writeFiles(t, dir, map[string]string{"plain": "x"})
	release := holdFIFOs(dir)
	defer release()
	for _, fifo := range fifos { // in turn, each after the hold, as a shim's
		opened := make(chan error, 1)
		go func() {
			f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
			if err == nil {
				_ = f.Close()
			}
			opened <- err
		}()
		select {
		case err := <-opened:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("the open of %s is still blocked while the FIFOs are held", fifo)
		}
	}
}

// TestBackgroundReserveHoldsUnderConcurrency: starts at once never pass
// the most allowed together (7 running, 4 at once against 8: one starts).
func TestBackgroundReserveHoldsUnderConcurrency(t *testing.T) {
	var bs backgrounds
	for i := range 7 {
		bs.add("s", &background{info: Process{ID: strconv.Itoa(i), Running: true}})
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	granted := 0
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, ok := bs.reserve("s", 8); ok {
				mu.Lock()
				granted++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if granted != 1 {
		t.Fatalf("%d of 4 starts at once passed with 7 of 8 running, want 1", granted)
	}
	release, _, ok := bs.reserve("t", 1)
	if !ok {
		t.Fatal("an empty session cannot start one")
	}
	if _, running, ok := bs.reserve("t", 1); ok || running != 1 {
		t.Fatalf("a second start beside one under way: ok=%v running=%d", ok, running)
	}
	release()
	if _, _, ok := bs.reserve("t", 1); !ok {
		t.Fatal("a released reservation still counts")
	}
}
