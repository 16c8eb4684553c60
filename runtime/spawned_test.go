package runtime

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestStageSpawner(t *testing.T) {
	state := filepath.Join(t.TempDir(), "spawner")
	src := filepath.Join(t.TempDir(), "servcraft-spawner")
	if err := os.WriteFile(src, []byte("v1"), 0o644); err != nil {
		t.Fatal(err)
	}
	first, err := stageSpawner(state, src)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(first, state+"/") {
		t.Fatalf("staged at %s, not in the spawner folder", first)
	}
	if st, err := os.Stat(first); err != nil || st.Mode().Perm() != 0o755 {
		t.Fatalf("staged file: %v %v", st, err)
	}
	again, err := stageSpawner(state, src)
	if err != nil || again != first {
		t.Fatalf("the same binary staged again: %s %v, want %s", again, err, first)
	}
	// An upgrade brings another binary: a new file, the old one left for the containers that use it.
	if err := os.WriteFile(src, []byte("v2"), 0o644); err != nil {
		t.Fatal(err)
	}
	second, err := stageSpawner(state, src)
	if err != nil || second == first {
		t.Fatalf("another binary: %s %v", second, err)
	}
	if data, _ := os.ReadFile(first); string(data) != "v1" {
		t.Fatalf("the first staged file changed: %q", data)
	}
	if entries, _ := os.ReadDir(state); len(entries) != 2 {
		t.Fatalf("left in the folder: %v", entries)
	}
	if _, err := stageSpawner(state, filepath.Join(state, "missing")); err == nil {
		t.Fatal("a missing spawner is staged")
	}
}
