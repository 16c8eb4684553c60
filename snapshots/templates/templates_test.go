package templates

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/servcraft/servcraftd/runtime/runtimetest/testneeds"
)

func TestTemplates(t *testing.T) {
	if got := Types(); !slices.Equal(got, []string{"js", "ts"}) {
		t.Fatalf("types %v", got)
	}
	for _, tc := range []struct {
		typ   string
		entry string
		start string
	}{
		{"ts", "src/app.ts", "tsx src/app.ts"},
		{"js", "src/app.js", "node src/app.js"},
	} {
		fs, err := Files(tc.typ)
		if err != nil {
			t.Fatal(err)
		}
		paths := map[string][]byte{}
		for _, f := range fs {
			paths[f.Path] = f.Data
		}
		if _, ok := paths[tc.entry]; !ok {
			t.Errorf("%s lacks %s: %v", tc.typ, tc.entry, paths)
		}
		var pkg struct {
			Scripts      map[string]string `json:"scripts"`
			Dependencies map[string]string `json:"dependencies"`
		}
		if err := json.Unmarshal(paths["package.json"], &pkg); err != nil {
			t.Fatalf("%s package.json: %v", tc.typ, err)
		}
		if pkg.Scripts["start"] != tc.start || pkg.Dependencies["fastify"] == "" {
			t.Errorf("%s package.json: %+v", tc.typ, pkg)
		}
	}
	for _, bad := range []string{"", "py", "../files", "ts/src"} {
		if _, err := Files(bad); !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("Files(%q) = %v", bad, err)
		}
	}
}

func TestSeed(t *testing.T) {
	testneeds.Root(t)
	dir := t.TempDir()
	if err := Seed(dir, "ts"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "src", "app.ts")); err != nil {
		t.Fatalf("seeded ts project: %v", err)
	}
	err := Seed(dir, "cobol")
	if !errors.Is(err, errdefs.ErrInvalidArgument) || !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("unknown project type: %v", err)
	}
}
