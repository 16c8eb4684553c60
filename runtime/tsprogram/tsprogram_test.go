package tsprogram

import (
	"encoding/json"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

var testOptions = Options{Mount: "/workspace", NodeVersion: "20.20.2", MaxFiles: 8, MaxBytes: 1 << 20}

func workspace(t *testing.T, files map[string]string) *os.Root {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	return root
}

func TestPlanTransformsTheProgramsOwnFiles(t *testing.T) {
	root := workspace(t, map[string]string{
		"main.ts":                       "import { x } from './lib'\nimport type { T } from './types'\nimport * as fs from 'node:fs'\nimport path from 'path'\nimport data from './data.json'\nimport dep from 'dep'\nconst t: T = 1\nconsole.log(x, t, fs, path, data, dep, import.meta.url)",
		"lib.ts":                        "export const x: number = 42; export { y } from './sub/y.cts'",
		"sub/y.cts":                     "export const y = require('../view')",
		"view.tsx":                      "export const v = <b>x</b>",
		"types.ts":                      "export type T = number",
		"data.json":                     "{}",
		"node_modules/dep/package.json": `{"main":"index.js"}`,
	})
	prog, err := Plan(root, "main.ts", testOptions)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/workspace/lib.ts", "/workspace/main.ts", "/workspace/sub/y.cts", "/workspace/view.tsx"}
	if got := fileNames(prog); !slices.Equal(got, want) {
		t.Fatalf("files %v, want %v (the type-only import is not one)", got, want)
	}
	main := prog.Files["/workspace/main.ts"]
	for _, part := range []string{`__filename="/workspace/main.ts";(()=>{`, `"file:///workspace/main.ts"`, `require("./lib")`, "sourceMappingURL=data:application/json;base64,"} {
		if !strings.Contains(main, part) {
			t.Errorf("main.ts's CommonJS lacks %q:\n%s", part, main)
		}
	}
	if strings.Contains(main, ": T") || strings.Contains(main, "./types") {
		t.Errorf("types survived the transform:\n%s", main)
	}
}

func TestPlanLeavesToTsxWhatItCannotMakeEqual(t *testing.T) {
	cases := []struct {
		name  string
		files map[string]string
		entry string
		why   string
	}{
		{"commonjs imports an es module", map[string]string{"a.ts": "import './b.mts'", "b.mts": "export {}"}, "a.ts", "b.mts is an ES module in a program of CommonJS"},
		{"es module imports commonjs", map[string]string{"a.mts": "import './b.cts'", "b.cts": "export {}"}, "a.mts", "b.cts is CommonJS in a program of an ES module"},
		{"commonjs package inside an es module", map[string]string{"package.json": `{"type":"module"}`, "a.ts": "import './sub/b'", "sub/package.json": `{"type":"commonjs"}`, "sub/b.ts": "1"}, "a.ts", "sub/b.ts is CommonJS"},
		{"require in an es module", map[string]string{"package.json": `{"type":"module"}`, "a.ts": "const b = require('./b'); console.log(b)", "b.ts": "1"}, "a.ts", "require in an ES module"},
		{"json in an es module", map[string]string{"a.mts": "import d from './d.json'; console.log(d)", "d.json": "{}"}, "a.mts", "JSON in an ES module"},
		{"local javascript in an es module", map[string]string{"a.mts": "import './b.js'", "b.js": "1"}, "a.mts", "JavaScript"},
		{"ambiguous .js in an es module", map[string]string{"a.mts": "import './b.js'", "b.ts": "1", "b.tsx": "1"}, "a.mts", "2 TypeScript files"},
		{"missing .js in an es module", map[string]string{"a.mts": "import './b.js'"}, "a.mts", "0 TypeScript files"},
		{"typescript package entry", map[string]string{"a.mts": "import x from 'p'; console.log(x)", "node_modules/p/package.json": `{"exports":{".":{"types":"./i.d.ts","import":"./src/i.ts"}}}`}, "a.mts", "entry is TypeScript"},
		{"typescript under node_modules", map[string]string{"tsconfig.json": `{}`, "a.ts": "import './node_modules/x/y'", "node_modules/x/y.ts": "1"}, "a.ts", "wildcards skip"},
		{"dynamic import in an es module", map[string]string{"a.mts": "await import('./b.mts')", "b.mts": "1"}, "a.mts", "import()"},
		{"tsconfig paths", map[string]string{"tsconfig.json": `{"compilerOptions":{"paths":{"@/*":["src/*"]}}}`, "a.ts": "1"}, "a.ts", "paths"},
		{"tsconfig extends", map[string]string{"tsconfig.json": `{"extends":"./base.json"}`, "a.ts": "1"}, "a.ts", "extends"},
		{"tsconfig with comments", map[string]string{"tsconfig.json": "{ // strict\n}", "a.ts": "1"}, "a.ts", "plain JSON"},
		{"dynamic import", map[string]string{"a.ts": "import('./b')", "b.ts": "1"}, "a.ts", "import()"},
		{"local javascript", map[string]string{"a.ts": "import './b.js'", "b.ts": "1"}, "a.ts", "JavaScript"},
		{"ambiguous", map[string]string{"a.ts": "import './b'", "b.ts": "1", "b.js": "1"}, "a.ts", "2 files"},
		{"folder", map[string]string{"a.ts": "import './b'", "b/index.ts": "1"}, "a.ts", "folder"},
		{"missing local", map[string]string{"a.ts": "import './nope'"}, "a.ts", "0 files"},
		{"outside", map[string]string{"a.ts": "import '../../etc/x.ts'"}, "a.ts", "outside"},
		{"missing package", map[string]string{"a.ts": "import 'left-pad'"}, "a.ts", "not installed"},
		{"esm package", map[string]string{"a.ts": "import chalk from 'chalk'; console.log(chalk)", "node_modules/chalk/package.json": `{"type":"module"}`}, "a.ts", "ES module"},
		{"subpath import", map[string]string{"a.ts": "import '#x'"}, "a.ts", "#x"},
		{"syntax error", map[string]string{"a.ts": "const x: number = ;"}, "a.ts", "does not parse"},
		{"top-level await", map[string]string{"a.ts": "await Promise.resolve(1); export {}"}, "a.ts", "Top-level await"},
		{"too many files", map[string]string{"a.ts": "import './b'", "b.ts": "import './c'", "c.ts": "import './d'", "d.ts": "import './e'", "e.ts": "import './f'", "f.ts": "import './g'", "g.ts": "import './h'", "h.ts": "import './i'", "i.ts": "1"}, "a.ts", "more than 8"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Plan(workspace(t, tc.files), tc.entry, testOptions)
			var fb *Fallback
			if !errors.As(err, &fb) {
				t.Fatalf("got %v, want a fallback naming %q", err, tc.why)
			}
			if !strings.Contains(fb.Reason, tc.why) {
				t.Errorf("reason %q, want it to name %q", fb.Reason, tc.why)
			}
		})
	}
}

func TestPlanESModuleProgram(t *testing.T) {
	root := workspace(t, map[string]string{
		"package.json":                  `{"type":"module"}`,
		"main.ts":                       "import { x } from './lib.js'\nimport { y } from './util'\nimport { z } from './old.mjs'\nimport type { T } from './types.js'\nimport dep from 'dep'\nimport { readFileSync } from 'node:fs'\nconst t: T = await Promise.resolve(1)\nconsole.log(x, y, z, t, dep, readFileSync, import.meta.url)",
		"lib.ts":                        "export const x: number = 42",
		"util.ts":                       "export { x as y } from './lib.js'",
		"old.mts":                       "export const z = 3",
		"types.ts":                      "export type T = number",
		"node_modules/dep/package.json": `{"type":"module","exports":{".":{"types":"./index.d.ts","import":"./index.js"}}}`,
	})
	prog, err := Plan(root, "main.ts", testOptions)
	if err != nil {
		t.Fatal(err)
	}
	if !prog.Module {
		t.Fatal("a program of a \"type\": \"module\" package is not an ES module")
	}
	want := []string{"/workspace/lib.ts", "/workspace/main.ts", "/workspace/old.mts", "/workspace/util.ts"}
	if got := fileNames(prog); !slices.Equal(got, want) {
		t.Fatalf("files %v, want %v", got, want)
	}
	imports := prog.Imports["/workspace/main.ts"]
	if imports["./lib.js"] != "/workspace/lib.ts" || imports["./util"] != "/workspace/util.ts" || imports["./old.mjs"] != "/workspace/old.mts" || len(imports) != 3 {
		t.Errorf("main.ts's imports resolve to %v", imports)
	}
	if prog.Imports["/workspace/util.ts"]["./lib.js"] != "/workspace/lib.ts" {
		t.Errorf("util.ts's imports resolve to %v", prog.Imports["/workspace/util.ts"])
	}
	main := prog.Files["/workspace/main.ts"]
	for _, part := range []string{`import{x}from"./lib.js"`, "await Promise.resolve(1)", "import.meta.url", "sourceMappingURL=data:application/json;base64,"} {
		if !strings.Contains(main, part) {
			t.Errorf("main.ts's ES module lacks %q:\n%s", part, main)
		}
	}
	if strings.Contains(main, "__filename") || strings.Contains(main, "./types") {
		t.Errorf("main.ts's ES module has CommonJS's wrapper or a type-only import:\n%s", main)
	}
}

func TestPlanRefusesSymlinks(t *testing.T) {
	root := workspace(t, map[string]string{"real.ts": "1", "a.ts": "import './link'"})
	if err := os.Symlink("real.ts", filepath.Join(root.Name(), "link.ts")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(root.Name(), "host.ts")); err != nil {
		t.Fatal(err)
	}
	for _, entry := range []string{"a.ts", "host.ts"} {
		_, err := Plan(root, entry, testOptions)
		var fb *Fallback
		if !errors.As(err, &fb) || !strings.Contains(fb.Reason, "symlink") {
			t.Errorf("%s: got %v, want a fallback for the symlink", entry, err)
		}
	}
}

func TestPlanBoundsBytes(t *testing.T) {
	opts := testOptions
	opts.MaxBytes = 100
	_, err := Plan(workspace(t, map[string]string{"a.ts": strings.Repeat("// x\n", 30)}), "a.ts", opts)
	var fb *Fallback
	if !errors.As(err, &fb) || !strings.Contains(fb.Reason, "more than 100 bytes") {
		t.Fatalf("got %v, want the byte bound", err)
	}
}

func TestPlanAppliesPlainTsconfig(t *testing.T) {
	root := workspace(t, map[string]string{
		"tsconfig.json": `{"compilerOptions":{"jsx":"react","jsxFactory":"h","experimentalDecorators":true}}`,
		"a.tsx":         "declare function h(...a: unknown[]): unknown; console.log(<b/>)",
	})
	prog, err := Plan(root, "a.tsx", testOptions)
	if err != nil {
		t.Fatal(err)
	}
	if code := prog.Files["/workspace/a.tsx"]; !strings.Contains(code, `h("b"`) {
		t.Fatalf("jsxFactory not applied:\n%s", code)
	}
}

// fileNames are the program's files, sorted.
func fileNames(prog *Program) []string {
	return slices.Sorted(maps.Keys(prog.Files))
}

// TestPlanNeverBlocksOnAFIFO: user code can put a FIFO where the planner
// reads (a program file, package.json, tsconfig.json); opening one for
// reading must not wait for a writer.
func TestPlanNeverBlocksOnAFIFO(t *testing.T) {
	for _, name := range []string{"b.ts", "package.json", "tsconfig.json"} {
		t.Run(name, func(t *testing.T) {
			root := workspace(t, map[string]string{"a.ts": "import './b'"})
			if err := syscall.Mkfifo(filepath.Join(root.Name(), name), 0o644); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { _, err := Plan(root, "a.ts", testOptions); done <- err }()
			select {
			case err := <-done:
				var fb *Fallback
				if !errors.As(err, &fb) {
					t.Fatalf("got %v, want a fallback", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the plan blocked on a FIFO")
			}
		})
	}
}

// TestTsconfigScope: which files the tsconfig applies to, as get-tsconfig
// decides for tsx.
func TestTsconfigScope(t *testing.T) {
	cases := []struct {
		config string
		in     []string
		out    []string
	}{
		{`{}`, []string{"/workspace/a.ts", "/workspace/src/deep/b.tsx"}, []string{"/workspace/.hidden/c.ts"}}, // node_modules: see the fallback "typescript under node_modules"
		{`{"include":["src"]}`, []string{"/workspace/src/app.ts", "/workspace/src/a/b/c.mts"}, []string{"/workspace/app.ts", "/workspace/srcs/app.ts", "/workspace/src/.x/a.ts"}},
		{`{"include":["src/*.ts"]}`, []string{"/workspace/src/app.ts"}, []string{"/workspace/src/a/b.ts", "/workspace/src/app.tsx"}},
		{`{"include":["**/*.ts"],"exclude":["**/*.test.ts","gen"]}`, []string{"/workspace/a.ts", "/workspace/x/y.ts"}, []string{"/workspace/a.test.ts", "/workspace/x/a.test.ts", "/workspace/gen/a.ts", "/workspace/a.tsx"}},
		{`{"files":["main.ts"]}`, []string{"/workspace/main.ts"}, []string{"/workspace/other.ts"}},
		{`{"files":["main.ts"],"include":["lib"]}`, []string{"/workspace/main.ts", "/workspace/lib/a.ts"}, []string{"/workspace/other.ts"}},
		{`{"compilerOptions":{"outDir":"dist"}}`, []string{"/workspace/a.ts"}, []string{"/workspace/dist/a.ts"}},
		{`{"include":["src/?.ts"]}`, []string{"/workspace/src/a.ts"}, []string{"/workspace/src/ab.ts"}},
	}
	for _, tc := range cases {
		var cfg map[string]json.RawMessage
		if err := json.Unmarshal([]byte(tc.config), &cfg); err != nil {
			t.Fatal(err)
		}
		scope, err := newTsconfigScope("/workspace", cfg)
		if err != nil {
			t.Fatalf("%s: %v", tc.config, err)
		}
		for _, f := range tc.in {
			if !scope.applies(f) {
				t.Errorf("%s: does not apply to %s", tc.config, f)
			}
		}
		for _, f := range tc.out {
			if scope.applies(f) {
				t.Errorf("%s: applies to %s", tc.config, f)
			}
		}
	}
}

func TestPlanTransformsAFileOutsideTheTsconfigWithoutIt(t *testing.T) {
	root := workspace(t, map[string]string{
		"tsconfig.json": `{"compilerOptions":{"jsx":"react","jsxFactory":"h"},"include":["src"]}`,
		"src/a.tsx":     "import './b'\ndeclare function h(...a: unknown[]): unknown; console.log(<b/>)",
		"src/b.tsx":     "import '../outside'\nconsole.log(<i/>)",
		"outside.tsx":   "console.log(<u/>)",
	})
	prog, err := Plan(root, "src/a.tsx", testOptions)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(prog.Files["/workspace/src/b.tsx"], `h("i"`) {
		t.Errorf("the tsconfig's jsxFactory not applied inside its include:\n%s", prog.Files["/workspace/src/b.tsx"])
	}
	if code := prog.Files["/workspace/outside.tsx"]; !strings.Contains(code, `React.createElement("u"`) {
		t.Errorf("a file outside the include got the tsconfig:\n%s", code)
	}
}
