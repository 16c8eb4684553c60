package runtime

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// maxMethods is the most methods any type of the project may declare:
// behaviour lives on small owners, not on one type that knows everything.
const maxMethods = 30

// TestNoTypeDeclaresMoreThanMaxMethods counts the methods each type of the
// module declares (test files aside) and fails on any over maxMethods.
func TestNoTypeDeclaresMoreThanMaxMethods(t *testing.T) {
	counts := map[string]int{}
	fset := token.NewFileSet()
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "node_modules" || strings.HasPrefix(d.Name(), ".")) && path != ".." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Recv == nil || len(fn.Recv.List) != 1 {
				continue
			}
			typ := fn.Recv.List[0].Type
			if star, ok := typ.(*ast.StarExpr); ok {
				typ = star.X
			}
			if idx, ok := typ.(*ast.IndexExpr); ok {
				typ = idx.X
			}
			if id, ok := typ.(*ast.Ident); ok {
				counts[filepath.Dir(path)+"."+id.Name]++
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if counts["../runtime.Manager"] == 0 {
		t.Fatalf("the walk found no methods of runtime.Manager: %v", counts)
	}
	for typ, n := range counts {
		if n > maxMethods {
			t.Errorf("%s declares %d methods, more than %d: move behaviour to an owner", typ, n, maxMethods)
		}
	}
	t.Logf("runtime.Manager declares %d methods", counts["../runtime.Manager"])
}

// TestArchitectureListsEveryPackage fails when a folder of the module that
// holds Go code has no row in docs/architecture.md's repository layout.
func TestArchitectureListsEveryPackage(t *testing.T) {
	doc, err := os.ReadFile("../docs/architecture.md")
	if err != nil {
		t.Fatal(err)
	}
	dirs := map[string]bool{}
	err = filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != ".." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "node_modules" || d.Name() == "testdata" || d.Name() == "bin") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".go") {
			dirs[strings.TrimPrefix(filepath.Dir(path), "../")] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !dirs["runtime"] || !dirs["api/apitest"] {
		t.Fatalf("the walk missed known packages: %v", dirs)
	}
	for dir := range dirs {
		if dir == ".." {
			continue
		}
		if !strings.Contains(string(doc), "| `"+dir+"/` |") {
			t.Errorf("docs/architecture.md has no row for %s/", dir)
		}
	}
}
