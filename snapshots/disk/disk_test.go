package disk

import (
	"errors"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestPlan(t *testing.T) {
	ws := Reservation{Name: "workspaces", Setting: "--max-sessions × --workspace-size", Bytes: 10 << 30, Used: 2 << 30}
	cache := Reservation{Name: "dependency layers", Setting: "--layer-budget", Bytes: 1 << 30}
	sp := Space{Total: 20 << 30, Free: 10 << 30}
	// 8 GiB still to come for workspaces + 1 GiB of cache + 1 GiB reserve = 10 GiB: fits exactly.
	if err := Plan(sp, 1<<30, []Reservation{ws, cache}); err != nil {
		t.Fatalf("exact fit refused: %v", err)
	}
	err := Plan(sp, 1<<30+1, []Reservation{ws, cache})
	if !errors.Is(err, ErrHostFull) {
		t.Fatalf("one byte over: %v", err)
	}
	for _, want := range []string{"workspaces (--max-sessions × --workspace-size) 10 GiB, 2 GiB of it already on disk",
		"dependency layers (--layer-budget) 1 GiB", "reserve (--disk-reserve)", "short by 1 B", "10 GiB free of 20 GiB"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q lacks %q", err, want)
		}
	}
	// Used beyond Bytes (a smaller quota after a restart) never counts as room.
	if err := Plan(Space{Free: 1}, 1, []Reservation{{Bytes: 1, Used: 5}}); err != nil {
		t.Fatalf("over-used reservation: %v", err)
	}
}

func TestStat(t *testing.T) {
	sp, err := Stat(t.TempDir())
	if err != nil || sp.Total <= 0 || sp.Free < 0 || sp.Free > sp.Total {
		t.Fatalf("Stat = %+v, %v", sp, err)
	}
	if _, err := Stat("/does/not/exist"); err == nil {
		t.Fatal("Stat of a missing path succeeded")
	}
}

func TestFormat(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 900: "900 B", 1 << 10: "1 KiB", 3 << 29: "1.5 GiB", 12 << 20: "12 MiB"} {
		if got := Format(n); got != want {
			t.Errorf("Format(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestHostFullMapsNoSpace(t *testing.T) {
	for _, errno := range []error{unix.ENOSPC, unix.EDQUOT} {
		err := HostFull(&os.PathError{Op: "mkdir", Path: "/w/x", Err: errno})
		if !errors.Is(err, ErrHostFull) || !errors.Is(err, errno) {
			t.Errorf("%v: %v, want ErrHostFull wrapping it", errno, err)
		}
	}
	other := &os.PathError{Op: "mkdir", Path: "/w/x", Err: unix.EACCES}
	if err := HostFull(other); errors.Is(err, ErrHostFull) || err != other {
		t.Errorf("EACCES: %v", err)
	}
}
