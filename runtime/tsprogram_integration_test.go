package runtime_test

import (
	"strings"
	"testing"
	"time"

	"github.com/servcraft/servcraftd/runtime"
	"github.com/servcraft/servcraftd/runtime/runtimetest/testneeds"
	"github.com/servcraft/servcraftd/store"
)

// tsEqualityCorpus is the TypeScript the equality suite runs both ways:
// programs the daemon transforms itself and programs it leaves to tsx.
var tsEqualityCorpus = map[string]string{
	"tsconfig.json": `{"compilerOptions":{"target":"es2022","experimentalDecorators":true,"jsx":"react","jsxFactory":"h","jsxFragmentFactory":"Frag"},
"include":["cjs","esm","*.ts","*.mts"],"exclude":["cjs/plain"]}`,
	// Outside the tsconfig's scope (excluded): TC39 decorators, not the
	// tsconfig's experimental ones, and its imports of files in scope.
	"cjs/plain/deco.ts": `import { add } from "../lib";
function logged(value: any, ctx: ClassMethodDecoratorContext) {
  return function (this: any, ...a: any[]) { console.log("tc39", String(ctx.name), a); return value.apply(this, a) }
}
class Calc { @logged twice(n: number) { return add(n, n) } }
console.log(new Calc().twice(5));`,
	// CommonJS project: local imports, enums, decorators, satisfies, JSON,
	// type-only imports, packages (CommonJS), names of the file.
	"cjs/main.ts": `import { add, Color } from "./lib";
import type { Shape } from "./types";
import data from "./data.json";
import * as path from "node:path";
import { readFileSync } from "fs";
import pkg from "cjs-pkg";
const s: Shape = { kind: "sq", side: 2 } satisfies Shape;
console.log(add(2, 3), Color.Green, Color[1], data.name, s.kind, pkg.hello("ts"));
console.log(__filename, __dirname, path.basename(process.argv[1]), require.main === module, typeof import.meta);
console.log(readFileSync("cjs/data.json", "utf8").trim(), JSON.stringify(process.execArgv.length));`,
	"cjs/lib.ts": `export enum Color { Red, Green, Blue }
export function add(a: number, b: number): number { return a + b }`,
	"cjs/types.ts":  `export interface Shape { kind: "sq"; side: number }`,
	"cjs/data.json": `{"name":"corpus"}`,
	"cjs/deco.ts": `function logged(target: any, key: string, desc: PropertyDescriptor) {
  const f = desc.value; desc.value = function (...a: any[]) { console.log("call", key, a); return f.apply(this, a) }
}
class Calc { @logged twice(n: number) { return n * 2 } }
console.log(new Calc().twice(21));
class Box<T> { constructor(public readonly v: T) {} }
console.log(new Box<string>("boxed").v, Calc.name);`,
	"cjs/meta.ts": `console.log(import.meta.url, import.meta.filename, import.meta.dirname);`,
	"cjs/view.tsx": `function h(t: any, p: any, ...c: any[]) { return { t, c } }
function Frag() {}
console.log(JSON.stringify(<b>x<i>y</i></b>), JSON.stringify(<>z</>));`,
	"cjs/throw.ts": `interface A { a: number }
const a: A = { a: 1 };
function inner(): never {
  throw new Error("boom " + a.a);
}
function outer() { inner() }
outer();`,
	"cjs/lib-throw.ts": `import { explode } from "./explode";
console.log("before");
explode(3);`,
	"cjs/explode.ts": `export function explode(n: number): void {
  if (n > 0) return explode(n - 1);
  const e: Error = new TypeError("deep");
  throw e;
}`,
	"cjs/exit.ts":   `console.log("bye"); process.exitCode = 4;`,
	"cjs/reject.ts": `const p: Promise<void> = Promise.reject(new Error("nope")); p;`,
	"cjs/stdin.ts":  `let s: string = ""; process.stdin.on("data", (d: Buffer) => (s += d)).on("end", () => console.log(s.toUpperCase()));`,
	"cjs/fork.ts":   `import { fork } from "child_process"; fork(__dirname + "/child.ts").on("exit", (c: number) => console.log("forked", c));`,
	"cjs/child.ts":  `const n: number = 7; console.log("child", n, process.execArgv.length > 0);`,
	"cjs/old.cts":   `const os = require("os"); console.log(typeof os.cpus, typeof module, __filename);`,
	"cjs/dynreq.ts": `const name: string = "./lib"; const lib = require(name + ".ts"); console.log(lib.add(1, 1));`,
	"cjs/runtime-error.ts": `const o: any = undefined;
console.log("x");
o.missing.field = 1;`,
	// ES-module project (the ts template's kind): imports by .js and
	// without an ending, top-level await, packages of both kinds, errors.
	"esm/package.json": `{"type":"module"}`,
	"esm/main.ts": `import { v, Color } from "./lib.js";
import { w } from "./util";
import type { Shape } from "../cjs/types";
import esm from "esm-pkg";
import cjs from "cjs-pkg";
import { basename } from "node:path";
const s = { kind: "sq", side: 1 } satisfies Shape;
const later: number = await Promise.resolve(v * 2);
console.log("esm", v, w, later, Color.Blue, s.kind, esm, cjs.hello("esm"));
console.log(import.meta.url, import.meta.filename, basename(process.argv[1]), typeof require, typeof __filename);`,
	"esm/lib.ts": `export const v: number = 7;
export enum Color { Red, Green, Blue }`,
	"esm/util.ts": `import { v } from "./lib.js"; export const w: string = "w" + v;`,
	"esm/deco.ts": `function logged(target: any, key: string, desc: PropertyDescriptor) {
  const f = desc.value; desc.value = function (...a: any[]) { console.log("call", key, a); return f.apply(this, a) }
}
class Calc { @logged twice(n: number) { return n * 2 } }
console.log(new Calc().twice(4), Calc.name);`,
	"esm/throw.ts": `import { explode } from "./explode.js";
console.log("before");
explode(2);`,
	"esm/explode.ts": `export function explode(n: number): void {
  if (n > 0) return explode(n - 1);
  throw new RangeError("deep esm");
}`,
	"esm/reject.ts": `const p: Promise<void> = Promise.reject(new Error("esm nope")); await p;`,
	"esm/hang.ts": `const never: Promise<void> = new Promise(() => {});
await never;`,
	"esm/stdin.ts": `let s: string = ""; for await (const d of process.stdin) s += d; console.log(s.toUpperCase());`,
	"mod.mts":      `const u: string = import.meta.url; console.log(u, process.argv[1]);`,
	// CommonJS inside the ES-module package: .cts says so.
	"esm/legacy.cts": `const n: number = 1; console.log("cts", n, require.main === module, typeof module);`,
	// Left to tsx: top-level await in CommonJS, syntax errors, ES-module
	// packages from CommonJS, dynamic import(), JSON in an ES module.
	"tla.ts":      `const v = await Promise.resolve(5); console.log("tla", v); export {};`,
	"esm/json.ts": `import data from "../cjs/data.json"; console.log(data.name);`,
	"esm/dyn.ts":  `const m = await import("./lib.js"); console.log(m.v);`,
	"syntax.ts":   "const x: number = ;\n",
	"esmpkg.ts":   `import e from "esm-pkg"; console.log(e);`,
	"dyn.ts":      `import("./cjs/lib").then((m) => console.log("dyn", m.add(1, 2)));`,
	// Packages.
	"node_modules/cjs-pkg/package.json": `{"name":"cjs-pkg","main":"index.js"}`,
	"node_modules/cjs-pkg/index.js":     `exports.hello = (n) => "hello " + n;`,
	"node_modules/esm-pkg/package.json": `{"name":"esm-pkg","type":"module","exports":"./index.js"}`,
	"node_modules/esm-pkg/index.js":     `export default "esm-pkg default";`,
}

// TestTypeScriptTransformMatchesTsx is the equality suite: each program of
// the corpus runs as a cold `node --import <tsx loader>` and through
// execute, and the two must agree on stdout, exit code, stderr (stack lines
// aside) and the stack frames in the user's files. Programs the daemon can
// transform must have been transformed (and, after the first, run warm on a
// JavaScript runner); the rest must have been left to tsx.
func TestTypeScriptTransformMatchesTsx(t *testing.T) {
	h := newHarness(t, func(c *runtime.Config) { c.Runners = true; c.OutputLimit = 64 << 10 })
	if h.env.ToolchainDir == "" {
		testneeds.Unavailable(t, "no TypeScript toolchain (SERVCRAFT_TEST_TOOLCHAIN)")
	}
	s := h.session(t, "")
	writeFiles(t, h, s, tsEqualityCorpus)
	compareWithTsx(t, h, s, []tsCase{
		{"cjs/main.ts", "", true}, {"cjs/deco.ts", "", true}, {"cjs/meta.ts", "", true},
		{"cjs/view.tsx", "", true}, {"cjs/throw.ts", "", true}, {"cjs/lib-throw.ts", "", true},
		{"cjs/exit.ts", "", true}, {"cjs/reject.ts", "", true}, {"cjs/stdin.ts", "abc\ndef", true},
		{"cjs/fork.ts", "", true}, {"cjs/old.cts", "", true}, {"cjs/dynreq.ts", "", true},
		{"cjs/runtime-error.ts", "", true}, {"cjs/plain/deco.ts", "", true},
		{"esm/main.ts", "", true}, {"esm/deco.ts", "", true}, {"esm/throw.ts", "", true},
		{"esm/reject.ts", "", true}, {"esm/hang.ts", "", true}, {"esm/stdin.ts", "ab\ncd", true},
		{"mod.mts", "", true}, {"esm/legacy.cts", "", true},
		{"tla.ts", "", false}, {"syntax.ts", "", false}, {"esmpkg.ts", "", false}, {"dyn.ts", "", false},
		{"esm/json.ts", "", false}, {"esm/dyn.ts", "", false},
	})
}

// TestTypeScriptTemplateProgramMatchesTsx: a program of the ts template
// (an ES-module package, its tsconfig.json with NodeNext and "include":
// ["src"]) is transformed, and runs as under tsx.
func TestTypeScriptTemplateProgramMatchesTsx(t *testing.T) {
	h := newHarness(t, func(c *runtime.Config) { c.Runners = true; c.OutputLimit = 64 << 10 })
	if h.env.ToolchainDir == "" {
		testneeds.Unavailable(t, "no TypeScript toolchain (SERVCRAFT_TEST_TOOLCHAIN)")
	}
	s, created, err := h.m.Create(h.env.Context(t), strings.ReplaceAll(t.Name(), "/", "."), "ts")
	if err != nil || !created {
		t.Fatalf("create from the ts template: created=%v err=%v", created, err)
	}
	writeFiles(t, h, s, map[string]string{
		"src/hello.ts": `import { greet, type Who } from "./greet.js";
const who: Who = { name: "template" };
console.log(greet(who), import.meta.url.endsWith("/src/hello.ts"));
greet({ name: "" });`,
		"src/greet.ts": `export interface Who { name: string }
export function greet(w: Who): string {
  if (!w.name) throw new Error("nobody to greet");
  return "hello " + w.name;
}`,
	})
	compareWithTsx(t, h, s, []tsCase{{"src/hello.ts", "", true}, {"src/hello.ts", "", true}})
}

// tsCase is a program of a corpus: its main file, its stdin, and whether
// the daemon must transform it (else leave it to tsx).
type tsCase struct {
	script, stdin string
	transformed   bool
}

// compareWithTsx runs each case as a cold `node --import <tsx loader>` and
// through execute, and fails where the two disagree on stdout, exit code,
// stderr (stack lines aside) and the stack frames in the user's files, or
// where the run took the other path. Transformed runs after the first of
// their kind must have been warm.
func compareWithTsx(t *testing.T, h *harness, s store.Session, cases []tsCase) {
	t.Helper()
	ctx := h.env.Context(t)
	for i, tc := range cases {
		cold, err := h.m.Exec(ctx, s.SessionID, runtime.ExecRequest{
			Args:  []string{"/usr/local/bin/node", "--import", runtime.TSLoader, "/workspace/" + tc.script},
			Stdin: []byte(tc.stdin), Timeout: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		got, err := h.m.Exec(ctx, s.SessionID, runtime.ExecRequest{Script: tc.script, Stdin: []byte(tc.stdin), Timeout: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case tc.transformed && got.TypeScript != "esbuild":
			t.Errorf("%s: ran as %q, want it transformed by the daemon", tc.script, got.TypeScript)
		case tc.transformed && i > 0 && !got.Warm && tc.script != "esm/main.ts": // the first ES module starts the first ES-module runner
			t.Errorf("%s: transformed but ran cold with a JavaScript runner on its way", tc.script)
		case !tc.transformed && !strings.HasPrefix(got.TypeScript, "tsx: "):
			t.Errorf("%s: ran as %q, want it left to tsx", tc.script, got.TypeScript)
		}
		if cold.ExitCode != got.ExitCode || cold.Stdout != got.Stdout || cold.TimedOut != got.TimedOut ||
			stderrWithoutStack(cold.Stderr) != stderrWithoutStack(got.Stderr) ||
			strings.Join(userFrames(cold.Stderr), "\n") != strings.Join(userFrames(got.Stderr), "\n") {
			t.Errorf("%s differs from tsx:\ntsx  %+v\nthis %+v", tc.script, cold, got)
		}
		t.Logf("%s (%s): exit %d, tsx %v, this %v (warm %v)", tc.script, got.TypeScript, got.ExitCode,
			cold.Duration.Round(time.Millisecond), got.Duration.Round(time.Millisecond), got.Warm)
	}
}

// stderrWithoutStack is stderr without its stack frames: tsx's own frames
// and the runner's differ below the program's.
func stderrWithoutStack(s string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(l, "    at ") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// userFrames are the stack frames that name the workspace's files.
func userFrames(s string) []string {
	var frames []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "    at ") && strings.Contains(l, "/workspace/") {
			frames = append(frames, l)
		}
	}
	return frames
}
