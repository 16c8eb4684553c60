// Package tsprogram turns a TypeScript program of a workspace into the
// JavaScript that tsx would run for it, ahead of the run and in the daemon,
// with esbuild's Go API: the transformer tsx itself calls, at the version the
// toolchain pins, with the options tsx passes (target the sandbox's node,
// inline source maps without sources, whitespace minified, names kept, the
// workspace's tsconfig.json; for CommonJS, tsx's wrapper and its
// `import.meta`). A plain waiting `node` then runs it (see runtime's runner
// source), so a TypeScript run costs what a JavaScript one does instead of a
// tsx start.
//
// A program is CommonJS or an ES module as its main file is under node's
// and tsx's rules (.cts and .mts say so; .ts and .tsx follow the nearest
// package.json's "type"), and every file of it must be the same. An
// ES-module program also carries how each of its relative imports resolves,
// as tsx resolves it (`./lib.js` names lib.ts when only that is there), for
// the runner's module hooks. The tsconfig.json applies to the files its
// "files", "include" and "exclude" select, as tsx decides (see
// tsconfigScope); the others are transformed without it.
//
// Plan decides before the run whether a program can take this path. What it
// cannot make equal to tsx it leaves to tsx, and says why (a *Fallback): a
// program that mixes CommonJS and ES-module files, a tsconfig.json that is
// not plain JSON or that tsx would apply in ways a transform alone cannot
// (extends, references, paths, baseUrl, rootDirs, allowJs), dynamic
// import() and require.resolve, require in an ES module, imports of the
// workspace's own JavaScript (tsx transforms ES-module syntax in it), JSON
// imports in an ES module (tsx adds the import attribute node wants),
// directory and ambiguous extensionless imports, packages that are not
// installed (and, from CommonJS, packages that are ES modules; from an ES
// module, packages whose entry is TypeScript), symlinks, programs over the
// size bounds, and anything esbuild does not parse (tsx then reports the
// error as it always has).
package tsprogram

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/evanw/esbuild/pkg/api"
)

// Options say where the program will run.
type Options struct {
	// Mount is where the workspace is in the sandbox ("/workspace"): file
	// names in the program, its source maps and `import.meta` are under it.
	Mount string
	// NodeVersion is the sandbox's node ("20.20.2"): the syntax target.
	NodeVersion string
	// MaxFiles and MaxBytes bound the program's own TypeScript files, and
	// their source bytes, that one plan reads and transforms.
	MaxFiles int
	MaxBytes int64
}

// Program is a TypeScript program transformed ahead of its run.
type Program struct {
	// Files maps each of the program's TypeScript files, by its path in the
	// sandbox, to the JavaScript its run compiles in place of the file.
	Files map[string]string `json:"files"`
	// Module says the program is ES modules (else CommonJS).
	Module bool `json:"module,omitempty"`
	// Imports, for an ES-module program, maps each file (by its path in the
	// sandbox) to the files its relative imports name, by specifier.
	Imports map[string]map[string]string `json:"imports,omitempty"`
}

// Fallback is why a program is left to tsx.
type Fallback struct{ Reason string }

func (f *Fallback) Error() string { return "left to tsx: " + f.Reason }

func fallback(format string, args ...any) error {
	return &Fallback{Reason: fmt.Sprintf(format, args...)}
}

// tsEndings are the endings tsx runs as TypeScript.
var tsEndings = map[string]api.Loader{".ts": api.LoaderTS, ".cts": api.LoaderTS, ".mts": api.LoaderTS, ".tsx": api.LoaderTSX}

// tsconfigKeysLeftToTsx are the tsconfig.json settings that do more than a
// transform's options: tsx applies them while it resolves or selects files.
var tsconfigKeysLeftToTsx = []string{"extends", "references"}
var compilerOptionsLeftToTsx = []string{"paths", "baseUrl", "rootDirs", "allowJs"}

// Plan reads the program whose main file is entry (a slash path relative to
// root, the workspace) and the TypeScript files it imports, and transforms
// each. Every error is a reason to leave the program to tsx: a *Fallback
// for what this path does not do, another for a file it could not read.
func Plan(root *os.Root, entry string, opt Options) (*Program, error) {
	if _, ok := tsEndings[path.Ext(entry)]; !ok {
		return nil, fallback("not a TypeScript file")
	}
	tsconfig, scope, err := readTsconfig(root, opt.Mount)
	if err != nil {
		return nil, err
	}
	p := &planner{root: root, opt: opt, tsconfig: tsconfig, scope: scope, prog: &Program{Files: map[string]string{}}}
	if p.prog.Module, err = p.isModule(path.Clean(entry)); err != nil {
		return nil, err
	}
	if p.prog.Module {
		p.prog.Imports = map[string]map[string]string{}
	}
	queue := []string{path.Clean(entry)}
	seen := map[string]bool{queue[0]: true}
	for len(queue) > 0 {
		rel := queue[0]
		queue = queue[1:]
		next, err := p.add(rel)
		if err != nil {
			return nil, err
		}
		for _, n := range next {
			if !seen[n] {
				seen[n] = true
				queue = append(queue, n)
			}
		}
	}
	return p.prog, nil
}

type planner struct {
	root     *os.Root
	opt      Options
	tsconfig string
	scope    *tsconfigScope // the files tsconfig applies to; nil with none
	prog     *Program
	bytes    int64
}

// add transforms the TypeScript file rel and returns the workspace's
// TypeScript files it imports.
func (p *planner) add(rel string) ([]string, error) {
	if len(p.prog.Files) >= p.opt.MaxFiles {
		return nil, fallback("more than %d TypeScript files", p.opt.MaxFiles)
	}
	if err := p.plainFile(rel); err != nil {
		return nil, err
	}
	src, err := readRegular(p.root, rel, p.opt.MaxBytes-p.bytes)
	if errors.Is(err, errTooBig) {
		return nil, fallback("more than %d bytes of TypeScript", p.opt.MaxBytes)
	}
	if err != nil {
		return nil, err
	}
	p.bytes += int64(len(src))
	if p.scope != nil && wildcardsSkip(rel) {
		return nil, fallback("%s is in a folder tsconfig.json's wildcards skip", rel)
	}
	module, err := p.isModule(rel)
	if err != nil {
		return nil, err
	}
	if module != p.prog.Module {
		return nil, fallback("%s is %s in a program of %s", rel, formatName(module), formatName(p.prog.Module))
	}
	imports, err := p.imports(rel, src)
	if err != nil {
		return nil, err
	}
	var local []string
	for _, imp := range imports {
		target, err := p.resolve(rel, imp)
		if err != nil {
			return nil, err
		}
		if target != "" {
			local = append(local, target)
			if p.prog.Module {
				file := p.sandboxPath(rel)
				if p.prog.Imports[file] == nil {
					p.prog.Imports[file] = map[string]string{}
				}
				p.prog.Imports[file][imp.spec] = p.sandboxPath(target)
			}
		}
	}
	code, err := p.transform(rel, src)
	if err != nil {
		return nil, err
	}
	p.prog.Files[p.sandboxPath(rel)] = code
	return local, nil
}

func (p *planner) sandboxPath(rel string) string { return path.Join(p.opt.Mount, rel) }

// plainFile checks that rel is a regular file reached through no symlink:
// node names a module by its real path, which a transform cannot follow.
func (p *planner) plainFile(rel string) error {
	parts := strings.Split(rel, "/")
	for i := range parts {
		fi, err := p.root.Lstat(strings.Join(parts[:i+1], "/"))
		if err != nil {
			return fmt.Errorf("stat %s: %w", rel, err)
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return fallback("%s is reached through a symlink", rel)
		}
		if i == len(parts)-1 && !fi.Mode().IsRegular() {
			return fallback("%s is not a regular file", rel)
		}
	}
	return nil
}

// isModule reports whether node and tsx run the TypeScript file rel as an
// ES module: .mts is one, .cts is not, and .ts and .tsx are one in a package
// of "type": "module".
func (p *planner) isModule(rel string) (bool, error) {
	switch path.Ext(rel) {
	case ".mts":
		return true, nil
	case ".cts":
		return false, nil
	}
	return p.packageIsModule(path.Dir(rel))
}

func formatName(module bool) string {
	if module {
		return "an ES module"
	}
	return "CommonJS"
}

// packageIsModule reports whether the nearest package.json from dir up to
// the workspace says "type": "module".
func (p *planner) packageIsModule(dir string) (bool, error) {
	for {
		pkg, err := readPackageJSON(p.root, path.Join(dir, "package.json"))
		switch {
		case err == nil:
			return pkg.Type == "module", nil
		case !errors.Is(err, fs.ErrNotExist):
			return false, err
		}
		if dir == "." {
			return false, nil
		}
		dir = path.Dir(dir)
	}
}

// packageJSON is what the planner reads of a package.json.
type packageJSON struct {
	Type    string          `json:"type"`
	Main    any             `json:"main"`
	Module  any             `json:"module"`
	Exports json.RawMessage `json:"exports"`
}

// readPackageJSON reads the package.json name: fs.ErrNotExist (wrapped)
// when there is none, a *Fallback when it is not a regular file or not JSON.
func readPackageJSON(root *os.Root, name string) (*packageJSON, error) {
	data, err := readRegular(root, name, maxJSONBytes)
	switch {
	case errors.Is(err, fs.ErrInvalid):
		return nil, fmt.Errorf("read %s: %w", name, fs.ErrNotExist) // a file where a folder should be
	case errors.Is(err, errTooBig):
		return nil, fallback("%s is over %d bytes", name, maxJSONBytes)
	case err != nil:
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	var pkg packageJSON
	if err := json.Unmarshal(data, &pkg); err != nil {
		return nil, fallback("%s is not valid JSON", name)
	}
	return &pkg, nil
}

// entryIsTypeScript reports whether a package's package.json points an
// entry (main, module or exports) at a TypeScript file, which node's own
// loader cannot run and tsx's transforms.
func (pkg *packageJSON) entryIsTypeScript() bool {
	var entries []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case string:
			entries = append(entries, v)
		case map[string]any:
			for k, e := range v {
				if k != "types" && k != "typings" {
					walk(e)
				}
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(pkg.Main)
	walk(pkg.Module)
	if len(pkg.Exports) > 0 {
		var exports any
		if json.Unmarshal(pkg.Exports, &exports) == nil {
			walk(exports)
		}
	}
	for _, e := range entries {
		_, ts := tsEndings[path.Ext(e)]
		declaration := strings.HasSuffix(strings.TrimSuffix(e, path.Ext(e)), ".d")
		if ts && !declaration {
			return true
		}
	}
	return false
}

// anImport is one import of a file, as esbuild found it.
type anImport struct {
	spec string
	kind api.ResolveKind
}

// imports lists what the file imports or requires, as the transform keeps
// them (type-only imports are gone), by parsing it with every import left
// external.
func (p *planner) imports(rel string, src []byte) ([]anImport, error) {
	var mu sync.Mutex
	var found []anImport
	record := api.Plugin{Name: "imports", Setup: func(b api.PluginBuild) {
		b.OnResolve(api.OnResolveOptions{Filter: ".*"}, func(a api.OnResolveArgs) (api.OnResolveResult, error) {
			mu.Lock()
			found = append(found, anImport{spec: a.Path, kind: a.Kind})
			mu.Unlock()
			return api.OnResolveResult{Path: a.Path, External: true}, nil
		})
	}}
	res := api.Build(api.BuildOptions{
		Stdin: &api.StdinOptions{Contents: string(src), Sourcefile: p.sandboxPath(rel),
			ResolveDir: path.Dir(p.sandboxPath(rel)), Loader: tsEndings[path.Ext(rel)]},
		Bundle: true, Write: false, Platform: api.PlatformNode, Format: p.format(),
		TsconfigRaw: p.tsconfigFor(rel), LogLevel: api.LogLevelSilent, Plugins: []api.Plugin{record},
	})
	if len(res.Errors) > 0 {
		return nil, fallback("%s does not parse: %s", rel, res.Errors[0].Text)
	}
	return found, nil
}

// format is the program's module format, for esbuild.
func (p *planner) format() api.Format {
	if p.prog.Module {
		return api.FormatESModule
	}
	return api.FormatCommonJS
}

// resolve checks one import of the file rel and returns the workspace file
// it loads when that is TypeScript of the program ("" for a package or a
// JSON file, which node loads as tsx would).
func (p *planner) resolve(rel string, imp anImport) (string, error) {
	switch {
	case imp.kind == api.ResolveJSRequireCall && p.prog.Module:
		return "", fallback("%s uses require in an ES module", rel)
	case imp.kind != api.ResolveJSImportStatement && imp.kind != api.ResolveJSRequireCall:
		return "", fallback("%s uses %s", rel, kindName(imp.kind))
	}
	spec := imp.spec
	switch {
	case isBuiltin(spec):
		return "", nil
	case strings.HasPrefix(spec, "./") || strings.HasPrefix(spec, "../") || spec == "." || spec == "..":
		return p.resolveLocal(rel, spec)
	case strings.HasPrefix(spec, "/") || strings.HasPrefix(spec, "#") || strings.Contains(spec, ":"):
		return "", fallback("%s imports %q", rel, spec)
	default:
		return "", p.checkPackage(rel, spec)
	}
}

// resolveLocal finds the file a relative specifier names, as node's
// CommonJS resolver would with .ts, .tsx and .cts registered, and accepts
// it only where tsx finds the same one.
func (p *planner) resolveLocal(rel, spec string) (string, error) {
	target := path.Join(path.Dir(rel), spec)
	if target == ".." || strings.HasPrefix(target, "../") {
		return "", fallback("%s imports %q, outside the workspace", rel, spec)
	}
	isFile := func(name string) (bool, error) {
		fi, err := p.root.Lstat(name)
		switch {
		case errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrInvalid):
			return false, nil
		case err != nil:
			return false, fmt.Errorf("stat %s: %w", name, err)
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return false, fallback("%s imports %q, reached through a symlink", rel, spec)
		}
		if !fi.Mode().IsRegular() {
			return false, fallback("%s imports %q, not a regular file", rel, spec)
		}
		return true, nil
	}
	ext := path.Ext(target)
	if ext == ".json" && p.prog.Module {
		return "", fallback("%s imports %q: JSON in an ES module", rel, spec)
	}
	if js, ok := tsForJS[ext]; ok && p.prog.Module {
		return p.resolveJSToTS(rel, spec, target, js, isFile)
	}
	if _, ts := tsEndings[ext]; ts || ext == ".json" {
		ok, err := isFile(target)
		if err != nil {
			return "", err
		}
		if !ok {
			return "", fallback("%s imports %q, which is not there", rel, spec)
		}
		if ext == ".json" {
			return "", nil
		}
		return target, nil
	}
	switch ext {
	case ".js", ".cjs", ".mjs", ".jsx", ".node":
		return "", fallback("%s imports %q: JavaScript or a module tsx resolves its own way", rel, spec)
	}
	// Extensionless: exactly one TypeScript file, and nothing node would take first.
	var found []string
	for _, cand := range []string{target, target + ".js", target + ".json", target + ".node", target + ".ts", target + ".tsx", target + ".cts", target + ".mts", target + ".jsx", target + ".cjs", target + ".mjs"} {
		ok, err := isFile(cand)
		if err != nil {
			var fb *Fallback
			if errors.As(err, &fb) && cand == target {
				return "", fallback("%s imports %q, a folder", rel, spec)
			}
			return "", err
		}
		if ok {
			found = append(found, cand)
		}
	}
	if len(found) != 1 {
		return "", fallback("%s imports %q: %d files answer to it", rel, spec, len(found))
	}
	if _, ts := tsEndings[path.Ext(found[0])]; !ts || found[0] == target {
		return "", fallback("%s imports %q, which names %s", rel, spec, found[0])
	}
	return found[0], nil
}

// tsForJS are the TypeScript endings tsx tries, in an ES module, for an
// import that names a JavaScript file that is not there (TypeScript's own
// rule: `./lib.js` names lib.ts).
var tsForJS = map[string][]string{".js": {".ts", ".tsx"}, ".jsx": {".ts", ".tsx"}, ".mjs": {".mts"}, ".cjs": {".cts"}}

// resolveJSToTS resolves, in an ES module, an import that names a
// JavaScript file: it must be absent and exactly one of its TypeScript
// names there.
func (p *planner) resolveJSToTS(rel, spec, target string, endings []string, isFile func(string) (bool, error)) (string, error) {
	ok, err := isFile(target)
	if err != nil {
		return "", err
	}
	if ok {
		return "", fallback("%s imports %q: JavaScript of the workspace", rel, spec)
	}
	var found []string
	base := strings.TrimSuffix(target, path.Ext(target))
	for _, e := range endings {
		ok, err := isFile(base + e)
		if err != nil {
			return "", err
		}
		if ok {
			found = append(found, base+e)
		}
	}
	if len(found) != 1 {
		return "", fallback("%s imports %q: %d TypeScript files answer to it", rel, spec, len(found))
	}
	return found[0], nil
}

// checkPackage accepts an installed package, found in a node_modules
// folder from the importing file's folder up to the workspace, that node
// loads as it is: from CommonJS, one without "type": "module" (require
// cannot load an ES module in node 20); from an ES module, one whose entries
// are not TypeScript.
func (p *planner) checkPackage(rel, spec string) error {
	name := spec
	parts := strings.SplitN(spec, "/", 3)
	if strings.HasPrefix(spec, "@") && len(parts) >= 2 {
		name = parts[0] + "/" + parts[1]
	} else {
		name = parts[0]
	}
	dir := path.Dir(rel)
	for {
		pkg, err := readPackageJSON(p.root, path.Join(dir, "node_modules", name, "package.json"))
		switch {
		case err == nil && p.prog.Module && pkg.entryIsTypeScript():
			return fallback("package %s's entry is TypeScript", name)
		case err == nil && !p.prog.Module && pkg.Type == "module":
			return fallback("package %s is an ES module", name)
		case err == nil:
			return nil
		case !errors.Is(err, fs.ErrNotExist):
			return fallback("package %s: %v", name, err)
		}
		if dir == "." {
			return fallback("package %s is not installed in the workspace", name)
		}
		dir = path.Dir(dir)
	}
}

// transform is tsx's transform of one file, with its source map inline:
// its ES-module one (node runs the result as the file, `import.meta` and
// all) or its CommonJS one (wrapped, with `import.meta` defined).
func (p *planner) transform(rel string, src []byte) (string, error) {
	file := p.sandboxPath(rel)
	opts := api.TransformOptions{
		Loader: tsEndings[path.Ext(rel)], Format: api.FormatESModule,
		Engines:   []api.Engine{{Name: api.EngineNode, Version: p.opt.NodeVersion}},
		Sourcemap: api.SourceMapExternal, SourcesContent: api.SourcesContentExclude,
		MinifyWhitespace: true, KeepNames: true, Sourcefile: file, TsconfigRaw: p.tsconfigFor(rel),
		LogLevel: api.LogLevelSilent,
	}
	if !p.prog.Module {
		opts = p.commonJSOptions(rel, file)
	}
	res := api.Transform(string(src), opts)
	if len(res.Errors) > 0 {
		return "", fallback("%s does not transform: %s", rel, res.Errors[0].Text)
	}
	return string(res.Code) + "\n//# sourceMappingURL=data:application/json;base64," +
		base64.StdEncoding.EncodeToString(res.Map), nil
}

// commonJSOptions are tsx's options for a CommonJS file.
func (p *planner) commonJSOptions(rel, file string) api.TransformOptions {
	opts := api.TransformOptions{
		Loader: tsEndings[path.Ext(rel)], Format: api.FormatCommonJS, Platform: api.PlatformNode,
		Engines:   []api.Engine{{Name: api.EngineNode, Version: p.opt.NodeVersion}},
		Sourcemap: api.SourceMapExternal, SourcesContent: api.SourcesContentExclude,
		MinifyWhitespace: true, KeepNames: true, Sourcefile: file, TsconfigRaw: p.tsconfigFor(rel),
		Banner: "__filename=" + jsonString(file) + ";(()=>{", Footer: "})()",
		LogLevel: api.LogLevelSilent,
	}
	if path.Ext(rel) != ".cts" {
		meta, _ := json.Marshal(map[string]string{"dirname": path.Dir(file), "filename": file,
			"url": (&url.URL{Scheme: "file", Path: file}).String()})
		opts.Define = map[string]string{"import.meta": string(meta)}
	}
	return opts
}

// tsconfigFor is the tsconfig.json the transform of rel takes: the
// workspace's when it applies to the file, else none (as under tsx).
func (p *planner) tsconfigFor(rel string) string {
	if p.scope == nil || !p.scope.applies(p.sandboxPath(rel)) {
		return ""
	}
	return p.tsconfig
}

// readTsconfig returns the workspace's tsconfig.json for the transforms
// ("" when there is none) and the files it applies to, or why tsx must
// apply it itself. mount is where the workspace is in the sandbox.
func readTsconfig(root *os.Root, mount string) (string, *tsconfigScope, error) {
	data, err := readRegular(root, "tsconfig.json", maxJSONBytes)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil, nil
	}
	if err != nil {
		return "", nil, fmt.Errorf("read tsconfig.json: %w", err)
	}
	var cfg map[string]json.RawMessage
	if err := json.Unmarshal(data, &cfg); err != nil {
		return "", nil, fallback("tsconfig.json is not plain JSON")
	}
	for _, k := range tsconfigKeysLeftToTsx {
		if _, ok := cfg[k]; ok {
			return "", nil, fallback("tsconfig.json has %q", k)
		}
	}
	if raw, ok := cfg["compilerOptions"]; ok {
		var co map[string]json.RawMessage
		if err := json.Unmarshal(raw, &co); err != nil {
			return "", nil, fallback("tsconfig.json's compilerOptions is not an object")
		}
		for _, k := range compilerOptionsLeftToTsx {
			if _, ok := co[k]; ok {
				return "", nil, fallback("tsconfig.json has compilerOptions.%s", k)
			}
		}
	}
	scope, err := newTsconfigScope(mount, cfg)
	if err != nil {
		return "", nil, err
	}
	return string(data), scope, nil
}

// maxJSONBytes bounds a package.json or tsconfig.json the planner reads.
const maxJSONBytes = 1 << 20

var errTooBig = errors.New("file over the bound")

// readRegular reads name under root if it is a regular file of at most max
// bytes (errTooBig past that). User code can swap any file of the workspace
// while the daemon reads it: the file is opened without blocking (a FIFO put
// in its place answers at once) and checked through the open handle, and no
// more than max+1 bytes are read whatever its size says.
func readRegular(root *os.Root, name string, max int64) ([]byte, error) {
	f, err := root.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat %s: %w", name, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fallback("%s is not a regular file", name)
	}
	if fi.Size() > max {
		return nil, errTooBig
	}
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if int64(len(data)) > max {
		return nil, errTooBig
	}
	return data, nil
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func kindName(k api.ResolveKind) string {
	switch k {
	case api.ResolveJSDynamicImport:
		return "import()"
	case api.ResolveJSRequireResolve:
		return "require.resolve"
	default:
		return "an import esbuild calls kind " + fmt.Sprint(k)
	}
}

// builtins are node's own modules, importable without node: (and their
// subpaths, as "fs/promises").
var builtins = []string{"assert", "async_hooks", "buffer", "child_process", "cluster", "console",
	"constants", "crypto", "dgram", "diagnostics_channel", "dns", "domain", "events", "fs", "http",
	"http2", "https", "inspector", "module", "net", "os", "path", "perf_hooks", "process", "punycode",
	"querystring", "readline", "repl", "stream", "string_decoder", "sys", "timers", "tls",
	"trace_events", "tty", "url", "util", "v8", "vm", "wasi", "worker_threads", "zlib"}

func isBuiltin(spec string) bool {
	if strings.HasPrefix(spec, "node:") {
		return true
	}
	head, _, _ := strings.Cut(spec, "/")
	return slices.Contains(builtins, head)
}
