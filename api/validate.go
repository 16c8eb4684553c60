package api

import (
	"path"
	"regexp"
	"slices"
	"strings"

	"github.com/servcraft/servcraftd/snapshots/templates"
	"github.com/servcraft/servcraftd/snapshots/workspace"
)

var sessionIDPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,128}$`)

// validSessionID checks the client's sessionId: [A-Za-z0-9._-]{1,128}.
func validSessionID(id string) error {
	if id == "" {
		return invalid("sessionId is required")
	}
	if !sessionIDPattern.MatchString(id) {
		return invalid("sessionId must be 1 to 128 of A-Z a-z 0-9 . _ -")
	}
	if id == "." || id == ".." {
		return invalid("sessionId %q cannot appear in a preview URL", id)
	}
	return nil
}

// DefaultProjectType is the starter project of a session created without projectType.
const DefaultProjectType = "ts"

func validProjectType(t string) (string, error) {
	if t == "" {
		return DefaultProjectType, nil
	}
	types := templates.Types()
	if !slices.Contains(types, t) {
		return "", invalid("projectType %q: want one of %s", t, strings.Join(types, ", "))
	}
	return t, nil
}

// File endings execute runs: JavaScript with node, TypeScript with node and the tsx loader.
var (
	jsEndings = map[string]bool{".js": true, ".mjs": true, ".cjs": true}
	tsEndings = map[string]bool{".ts": true, ".mts": true, ".cts": true, ".tsx": true}
)

// validFilename checks execute's filename: a plain relative path inside the
// workspace whose ending node runs.
func validFilename(name string, lim workspace.PathLimits, typescript bool) (string, error) {
	if name == "" {
		return "index.js", nil
	}
	name, err := workspace.CleanPath(name, lim)
	if err != nil {
		return "", err
	}
	if strings.HasPrefix(name, "node_modules/") {
		return "", invalid("filename %q: node_modules is npm's", name)
	}
	ext := path.Ext(name)
	if tsEndings[ext] && !typescript {
		return "", invalid("filename %q: TypeScript needs the toolchain, which this server was started without (--toolchain-dir)", name)
	}
	if !jsEndings[ext] && !tsEndings[ext] {
		return "", invalid("filename %q: execute runs .js, .mjs, .cjs, .ts, .mts, .cts and .tsx files", name)
	}
	return name, nil
}
