package api

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestErrorBodiesHaveOneRenderer: no file of the package builds an error
// body but errors.go (renderError, newErrorBody), and no code is written as
// a literal anywhere but errcodes.go: a handler that answers an error some
// other way fails here.
func TestErrorBodiesHaveOneRenderer(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CompositeLit:
				if id, ok := n.Type.(*ast.Ident); ok && id.Name == "errorBody" && name != "errors.go" {
					t.Errorf("%s: an errorBody built outside errors.go (use renderError, fail or newErrorBody)", fset.Position(n.Pos()))
				}
			case *ast.KeyValueExpr:
				if key, ok := n.Key.(*ast.Ident); ok && key.Name == "Code" {
					if _, lit := n.Value.(*ast.BasicLit); lit {
						t.Errorf("%s: an error code written as a literal (use a code constant of errcodes.go)", fset.Position(n.Pos()))
					}
				}
			case *ast.CallExpr:
				if fn, ok := n.Fun.(*ast.Ident); ok && (fn.Name == "unavailable" || fn.Name == "renderError") {
					for _, a := range n.Args {
						if lit, ok := a.(*ast.BasicLit); ok && lit.Kind == token.STRING && strings.Count(lit.Value, " ") == 0 && name != "errcodes.go" {
							t.Errorf("%s: %s given a literal code %s", fset.Position(lit.Pos()), fn.Name, lit.Value)
						}
					}
				}
			}
			return true
		})
	}
}

// TestErrorCodesAreDocumented: every code the API answers is in the error
// table of docs/api.md.
func TestErrorCodesAreDocumented(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "docs", "api.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, code := range errorCodes {
		if !strings.Contains(string(doc), "| `"+code+"` |") {
			t.Errorf("code %q is not in docs/api.md's table of errors", code)
		}
	}
}
