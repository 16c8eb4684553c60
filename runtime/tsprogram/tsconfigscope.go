package tsprogram

import (
	"encoding/json"
	"path"
	"regexp"
	"strings"
)

// tsconfigScope is which files the workspace's tsconfig.json applies to, as
// tsx decides it (get-tsconfig's file matcher): a file it names in "files",
// else one that an "include" pattern matches (all files when neither
// "files" nor "include" is set) and no "exclude" pattern does ("exclude"
// defaults to compilerOptions.outDir and declarationDir). A file outside
// the scope is transformed without the tsconfig, as tsx does.
type tsconfigScope struct {
	files   map[string]bool
	include []*regexp.Regexp // nil: nothing is included by pattern
	exclude []*regexp.Regexp
}

// hiddenFromWildcards are the folders no wildcard of "include" enters.
var hiddenFromWildcards = []string{"node_modules", "bower_components", "jspm_packages"}

// newTsconfigScope reads the scope of the tsconfig.json at dir (a sandbox
// path) from its parsed top level.
func newTsconfigScope(dir string, cfg map[string]json.RawMessage) (*tsconfigScope, error) {
	var files, include, exclude []string
	for key, into := range map[string]*[]string{"files": &files, "include": &include, "exclude": &exclude} {
		if raw, ok := cfg[key]; ok {
			if err := json.Unmarshal(raw, into); err != nil {
				return nil, fallback("tsconfig.json's %q is not a list of strings", key)
			}
		}
	}
	resolve := func(p string) string {
		if path.IsAbs(p) {
			return path.Clean(p)
		}
		return path.Join(dir, p)
	}
	s := &tsconfigScope{files: map[string]bool{}}
	for _, f := range files {
		s.files[resolve(f)] = true
	}
	if _, ok := cfg["exclude"]; !ok {
		var co struct {
			OutDir         string `json:"outDir"`
			DeclarationDir string `json:"declarationDir"`
		}
		_ = json.Unmarshal(cfg["compilerOptions"], &co)
		for _, d := range []string{co.OutDir, co.DeclarationDir} {
			if d != "" {
				exclude = append(exclude, d)
			}
		}
	}
	for _, e := range exclude {
		re := regexp.QuoteMeta(resolve(e))
		re = strings.ReplaceAll(re, `\*\*/`, "(.+/)?")
		re = strings.ReplaceAll(re, `\*`, "[^/]*")
		re = strings.ReplaceAll(re, `\?`, "[^/]")
		rx, err := regexp.Compile("^" + re + "($|/)")
		if err != nil {
			return nil, fallback("tsconfig.json's exclude %q: %v", e, err)
		}
		s.exclude = append(s.exclude, rx)
	}
	_, hasFiles := cfg["files"]
	_, hasInclude := cfg["include"]
	if !hasFiles && !hasInclude {
		include = []string{"**/*"}
	}
	for _, in := range include {
		d := resolve(in)
		if last := path.Base(d); !strings.ContainsAny(last, ".*?") {
			d = path.Join(d, "**/*") // a folder: everything under it
		}
		re := regexp.QuoteMeta(d)
		re = strings.ReplaceAll(re, `/\*\*`, `(/[^./][^/]*)*?`)
		re = strings.ReplaceAll(re, `/\*`, `/[^./][^/]*`)
		re = strings.ReplaceAll(re, `\*`, `[^/]*`)
		re = strings.ReplaceAll(re, `/\?`, `/[^/]`)
		re = strings.ReplaceAll(re, `\?`, `[^/]`)
		rx, err := regexp.Compile("^" + re + "$")
		if err != nil {
			return nil, fallback("tsconfig.json's include %q: %v", in, err)
		}
		s.include = append(s.include, rx)
	}
	return s, nil
}

// applies reports whether the tsconfig applies to file (a sandbox path of
// a TypeScript file).
func (s *tsconfigScope) applies(file string) bool {
	if s.files[file] {
		return true
	}
	for _, rx := range s.exclude {
		if rx.MatchString(file) {
			return false
		}
	}
	for _, rx := range s.include {
		if rx.MatchString(file) {
			return true
		}
	}
	return false
}

// wildcardsSkip reports whether file is under a folder that include's
// wildcards never enter (get-tsconfig's patterns refuse those names where a
// wildcard begins a path segment): the planner leaves such files to tsx
// rather than tell a wildcard from a literal part of a pattern.
func wildcardsSkip(file string) bool {
	for _, part := range strings.Split(file, "/") {
		for _, h := range hiddenFromWildcards {
			if part == h {
				return true
			}
		}
	}
	return false
}
