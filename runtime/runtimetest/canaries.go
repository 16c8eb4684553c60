package runtimetest

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// Canaries are a host file and a host folder (holding one file) that
// nothing a session does may touch: attack tests point links at them.
type Canaries struct {
	File, Dir, Token string
}

// HostCanaries makes a fresh pair, root-owned, mode 0644, holding a random token.
func HostCanaries(t testing.TB) Canaries {
	t.Helper()
	base := t.TempDir()
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	c := Canaries{File: filepath.Join(base, "canary.txt"), Dir: filepath.Join(base, "canary-dir"),
		Token: "CANARY-" + hex.EncodeToString(b)}
	if err := os.WriteFile(c.File, []byte(c.Token), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(c.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.Dir, "inside.txt"), []byte(c.Token), 0o644); err != nil {
		t.Fatal(err)
	}
	return c
}

// AssertIntact checks content, owner and mode of both, and that the folder holds nothing new.
func (c Canaries) AssertIntact(t testing.TB) {
	t.Helper()
	for _, p := range []string{c.File, filepath.Join(c.Dir, "inside.txt")} {
		b, err := os.ReadFile(p)
		if err != nil || string(b) != c.Token {
			t.Errorf("canary %s changed: %q %v", p, b, err)
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil || st.Uid != 0 || st.Gid != 0 || st.Mode&0o777 != 0o644 {
			t.Errorf("canary %s: owner %d:%d mode %o (%v)", p, st.Uid, st.Gid, st.Mode&0o777, err)
		}
	}
	entries, err := os.ReadDir(c.Dir)
	if err != nil || len(entries) != 1 {
		names := []string{}
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("canary folder %s holds %v (%v), want only inside.txt", c.Dir, names, err)
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(c.Dir, &st); err != nil || st.Uid != 0 {
		t.Errorf("canary folder owner %d (%v)", st.Uid, err)
	}
}
