package runtime_test

import (
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	servruntime "github.com/servcraft/servcraftd/runtime"
	"github.com/servcraft/servcraftd/runtime/runtimetest"
)

// waitEnded polls until none of the session's background processes runs.
func waitEnded(t *testing.T, h *harness, sessionID string, within time.Duration) []servruntime.Process {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		list, err := h.m.Processes(h.env.Context(t), sessionID)
		if err != nil {
			t.Fatal(err)
		}
		running := 0
		for _, p := range list {
			if p.Running {
				running++
			}
		}
		if running == 0 {
			return list
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d background processes still run after %v", running, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// TestEndedBackgroundProcessesAreBounded starts and ends 300 background
// processes that each print a full log of the default size (256 KiB), and
// checks that the manager keeps only the last KeepEndedBackground (16) of
// them. The daemon (the manager runs in this process) stays within a stated
// bound: its Go heap grows by at most the kept logs plus 4 MiB, and its RSS
// by at most 16 MiB. Without the bound it would hold 300 logs, 300 × 256 KiB
// = 75 MiB of them, far past either bound.
func TestEndedBackgroundProcessesAreBounded(t *testing.T) {
	const keep, logBytes, total, rssBound = 16, 256 << 10, 300, 16 << 20
	h := newHarness(t, func(c *servruntime.Config) {
		c.KeepEndedBackground, c.BackgroundLogBytes, c.MaxBackground = keep, logBytes, 16
	})
	ctx := h.env.Context(t)
	s := h.session(t, "")
	start := func(n int) {
		for i := 0; i < n; i += 16 {
			var wg sync.WaitGroup
			errs := make(chan error, 16)
			for range min(16, n-i) {
				wg.Go(func() {
					if _, err := h.m.StartBackground(ctx, s.SessionID, "exec head -c 262144 /dev/zero"); err != nil {
						errs <- err
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatalf("start: %v", err)
			}
			waitEnded(t, h, s.SessionID, 30*time.Second)
		}
	}
	start(keep) // the kept set is full from here on
	before, rssBefore := heapInUse(), runtimetest.VmRSS(t)
	t0 := time.Now()
	start(total - keep)
	after, rssAfter := heapInUse(), runtimetest.VmRSS(t)
	list := waitEnded(t, h, s.SessionID, 30*time.Second)
	grown, rssGrown := int64(after)-int64(before), rssAfter-rssBefore
	t.Logf("%d background processes in %v; heap in use %d → %d bytes (%+d); RSS %d → %d bytes (%+d); %d kept", total,
		time.Since(t0).Round(time.Millisecond), before, after, grown, rssBefore, rssAfter, rssGrown, len(list))
	if len(list) != keep {
		t.Fatalf("%d ended processes kept, want %d", len(list), keep)
	}
	for _, p := range list {
		pl, err := h.m.Logs(ctx, s.SessionID, p.ID, false)
		if err != nil || len(pl.Output) != logBytes {
			t.Fatalf("kept process %s: %d bytes of log, %v", p.ID, len(pl.Output), err)
		}
	}
	if bound := int64(keep*logBytes + 4<<20); grown > bound {
		t.Fatalf("heap grew by %d bytes over %d ended processes, bound %d", grown, total-keep, bound)
	}
	if rssGrown > rssBound {
		t.Fatalf("RSS grew by %d bytes over %d ended processes, bound %d", rssGrown, total-keep, rssBound)
	}
}

// cpuTime is the CPU time this process (the daemon's manager) has used.
func cpuTime(t *testing.T) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestUnreadBackgroundOutputCostsNothing runs 8 copies of `yes` in the
// background with nobody reading: once their logs are full the manager stops
// reading them, so it (this test process) spends under 5% of a core and the
// processes themselves block on their pipes. A read resumes the output.
func TestUnreadBackgroundOutputCostsNothing(t *testing.T) {
	h := newHarness(t)
	ctx := h.env.Context(t)
	s := h.session(t, "")
	var ids []string
	for range 8 {
		p, err := h.m.StartBackground(ctx, s.SessionID, "yes")
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, p.ID)
	}
	// Every log fills within milliseconds of its start; wait for the last.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		info, err := h.m.Get(ctx, s.SessionID)
		if err != nil {
			t.Fatal(err)
		}
		cpu0 := info.Usage.CPUSeconds
		time.Sleep(200 * time.Millisecond)
		if info, err = h.m.Get(ctx, s.SessionID); err != nil {
			t.Fatal(err)
		}
		if info.Usage.CPUSeconds-cpu0 < 0.01 {
			break // the container has gone quiet: every yes blocks on its pipe
		}
		if time.Now().After(deadline) {
			t.Fatalf("the yes processes still burn CPU: %.3f s in 200 ms", info.Usage.CPUSeconds-cpu0)
		}
	}
	const window = 3 * time.Second
	before, wall := cpuTime(t), time.Now()
	info0, _ := h.m.Get(ctx, s.SessionID)
	time.Sleep(window) // the measurement window
	used, elapsed := cpuTime(t)-before, time.Since(wall)
	info1, _ := h.m.Get(ctx, s.SessionID)
	share := float64(used) / float64(elapsed)
	t.Logf("8 × yes, unread: daemon used %v CPU in %v (%.2f%% of a core); the container %.3f s",
		used, elapsed.Round(time.Millisecond), 100*share, info1.Usage.CPUSeconds-info0.Usage.CPUSeconds)
	if share >= 0.05 {
		t.Fatalf("daemon used %.1f%% of a core on unread background output", 100*share)
	}
	// A read resumes the output: the next read finds another full log of new lines.
	pl, err := h.m.Logs(ctx, s.SessionID, ids[0], false)
	if err != nil || len(pl.Output) == 0 || !pl.Process.Running {
		t.Fatalf("logs: %d bytes, %+v, %v", len(pl.Output), pl.Process, err)
	}
	follow, err := h.m.Logs(ctx, s.SessionID, ids[1], true)
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for deadline := time.After(10 * time.Second); got < 1<<20; {
		select {
		case p := <-follow.Follow:
			got += len(p)
		case <-deadline:
			t.Fatalf("a follower received %d bytes in 10 s", got)
		}
	}
}
