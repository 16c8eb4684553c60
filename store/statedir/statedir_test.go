package statedir

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestLayoutIsDocumented checks that the package comment lists every path
// a Dir gives, under the method's name, and nothing else.
func TestLayoutIsDocumented(t *testing.T) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "statedir.go", nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]string{} // method -> path
	for _, line := range strings.Split(f.Doc.Text(), "\n") {
		if fields := strings.Fields(line); len(fields) >= 2 && strings.HasPrefix(line, "\t") {
			documented[fields[1]] = strings.TrimSuffix(fields[0], "/")
		}
	}
	d := Dir("/state")
	v := reflect.ValueOf(d)
	seen := map[string]bool{}
	for i := 0; i < v.NumMethod(); i++ {
		name := v.Type().Method(i).Name
		got := v.Method(i).Call(nil)[0].String()
		seen[name] = true
		want, ok := documented[name]
		if !ok {
			t.Errorf("%s (%s) is not in the package comment's layout", name, got)
			continue
		}
		if got != filepath.Join("/state", want) {
			t.Errorf("%s is %s, the package comment says %s", name, got, want)
		}
	}
	for name := range documented {
		if !seen[name] {
			t.Errorf("the package comment lists %s, which Dir lacks", name)
		}
	}
	var exported int
	ast.Inspect(f, func(n ast.Node) bool {
		if fn, ok := n.(*ast.FuncDecl); ok && fn.Name.IsExported() {
			exported++
		}
		return true
	})
	if exported != len(seen) || exported < 8 {
		t.Errorf("%d exported methods, %d listed", exported, len(seen))
	}
}
