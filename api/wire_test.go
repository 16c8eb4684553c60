package api

import (
	"go/ast"
	"go/parser"
	"go/token"
	"strconv"
	"strings"
	"testing"
)

// TestWireTypesAreTheAPIsOwn checks that no request or response type in
// wire.go holds a type of another package of the module: each is mapped
// field by field, so a renamed runtime field cannot change the contract.
func TestWireTypesAreTheAPIsOwn(t *testing.T) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "wire.go", nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	module := map[string]bool{} // local names of the module's packages
	for _, imp := range f.Imports {
		path, _ := strconv.Unquote(imp.Path.Value)
		if strings.HasPrefix(path, "github.com/servcraft/servcraftd/") {
			name := path[strings.LastIndex(path, "/")+1:]
			if imp.Name != nil {
				name = imp.Name.Name
			}
			module[name] = true
		}
	}
	if !module["runtime"] {
		t.Fatal("wire.go no longer maps from the runtime: the check sees nothing")
	}
	ast.Inspect(f, func(n ast.Node) bool {
		st, ok := n.(*ast.StructType)
		if !ok {
			return true
		}
		for _, field := range st.Fields.List {
			ast.Inspect(field.Type, func(n ast.Node) bool {
				if sel, ok := n.(*ast.SelectorExpr); ok {
					if pkg, ok := sel.X.(*ast.Ident); ok && module[pkg.Name] {
						t.Errorf("%s: a wire type holds %s.%s: give it a type of its own and a mapper",
							fset.Position(sel.Pos()), pkg.Name, sel.Sel.Name)
					}
				}
				return true
			})
		}
		return true
	})
}
