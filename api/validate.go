package api

import (
	"path"
	"regexp"
	"strings"

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
	return nil
}

// Project types and their starter projects.
const (
	ProjectTS = "ts"
	ProjectJS = "js"
)

func validProjectType(t string) (string, error) {
	switch t {
	case "":
		return ProjectTS, nil
	case ProjectTS, ProjectJS:
		return t, nil
	}
	return "", invalid("projectType %q: want \"ts\" or \"js\"", t)
}

// runnable are the file endings execute runs with node.
var runnable = map[string]bool{".js": true, ".mjs": true, ".cjs": true}

// validFilename checks execute's filename: a plain relative path inside the
// workspace whose ending node runs.
func validFilename(name string, lim workspace.PathLimits) (string, error) {
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
	if !runnable[path.Ext(name)] {
		return "", invalid("filename %q: execute runs .js, .mjs and .cjs files", name)
	}
	return name, nil
}
