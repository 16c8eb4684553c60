package npmproxy

import (
	"net/http"
	"strings"

	"github.com/containerd/errdefs"
)

// maxNameLen is npm's limit on the length of a package name.
const maxNameLen = 214

// route is what a request asks for: a package document (file empty) or one
// of the package's tarballs.
type route struct {
	name string // "name" or "@scope/name"
	file string // "<basename>-<version>.tgz"
}

// parseRoute accepts exactly these origin-form paths:
//
//	/<name>  /@scope%2fname  /@scope/name        package document
//	/<name>/-/<file>.tgz  /@scope/name/-/<file>.tgz  tarball
//
// Anything suspicious is an InvalidArgument (400); a well-formed path that is
// not one of these is a NotFound (404).
func parseRoute(r *http.Request) (route, error) {
	if r.URL.Host != "" || !strings.HasPrefix(r.RequestURI, "/") {
		return route{}, errorf(errdefs.ErrInvalidArgument, "request target %q: only origin-form paths are served", r.RequestURI)
	}
	raw := r.URL.EscapedPath()
	for _, p := range []string{r.URL.Path, raw} {
		if strings.ContainsAny(p, "\\\x00") || strings.Contains(p, "..") || strings.Contains(p, "//") {
			return route{}, errorf(errdefs.ErrInvalidArgument, "path %q: backslash, NUL, '..' or '//'", raw)
		}
	}
	p := strings.TrimPrefix(raw, "/")
	if p == "" {
		return route{}, errorf(errdefs.ErrNotFound, "path %q: no such route", raw)
	}
	if strings.HasPrefix(p, "@") { // the one escape npm uses: @scope%2fname
		first, rest, _ := strings.Cut(p, "/")
		if i := strings.Index(strings.ToLower(first), "%2f"); i >= 0 {
			p = first[:i] + "/" + first[i+3:]
			if rest != "" {
				p += "/" + rest
			}
		}
	}
	if strings.Contains(p, "%") {
		return route{}, errorf(errdefs.ErrInvalidArgument, "path %q: percent-encoding other than @scope%%2fname", raw)
	}
	segs := strings.Split(p, "/")
	for _, s := range segs {
		if s == "" || s == "." {
			return route{}, errorf(errdefs.ErrInvalidArgument, "path %q: empty or '.' segment", raw)
		}
	}
	if segs[0] == "-" { // registry endpoints (/-/ping, /-/v1/search, audits): not served
		return route{}, errorf(errdefs.ErrNotFound, "path %q: no such route", raw)
	}
	name, rest := segs[0], segs[1:]
	if strings.HasPrefix(name, "@") && len(rest) > 0 {
		name, rest = name+"/"+rest[0], rest[1:]
	}
	if err := ValidName(name); err != nil {
		return route{}, err
	}
	switch {
	case len(rest) == 0:
		return route{name: name}, nil
	case len(rest) == 2 && rest[0] == "-" && strings.HasSuffix(rest[1], ".tgz"):
		return route{name: name, file: rest[1]}, nil
	default:
		return route{}, errorf(errdefs.ErrNotFound, "path %q: no such route", raw)
	}
}

// ValidName applies the rules validate-npm-package-name has for packages:
// at most 214 characters, no leading '.' or '_', only URL-safe characters
// without ~'!()*, optionally one lowercase @scope/ in front. Capitals are
// allowed in unscoped names, as the registry still serves legacy packages
// such as JSONStream.
func ValidName(name string) error {
	bad := func(why string) error {
		return errorf(errdefs.ErrInvalidArgument, "package name %q: %s", name, why)
	}
	if name == "" || len(name) > maxNameLen {
		return bad("empty or longer than 214 characters")
	}
	if name[0] == '.' || name[0] == '_' {
		return bad("starts with '.' or '_'")
	}
	pkg := name
	if name[0] == '@' {
		scope, rest, ok := strings.Cut(name[1:], "/")
		if !ok || !nameChars(scope, false) {
			return bad("invalid scope")
		}
		pkg = rest
	} else if name == "node_modules" || name == "favicon.ico" {
		return bad("blocked name")
	}
	if !nameChars(pkg, name[0] != '@') || pkg == "." {
		return bad("only a-z, 0-9, '-', '.', '_' are allowed (and A-Z in legacy unscoped names)")
	}
	return nil
}

func nameChars(s string, upper bool) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || upper && c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// basename is the file-name part of a package name: "name" for "@scope/name".
func basename(name string) string {
	return name[strings.LastIndexByte(name, '/')+1:]
}

// validVersion accepts the characters of a semver version; versions are put
// into paths and upstream URLs, so nothing else may pass.
func validVersion(v string) bool {
	if v == "" || len(v) > 256 || strings.Contains(v, "..") || !isAlnum(v[0]) {
		return false
	}
	for _, c := range []byte(v) {
		if !isAlnum(c) && c != '.' && c != '-' && c != '+' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// versionFromFile extracts the version from a tarball file name the way the
// rewritten documents spell it: <basename>-<version>.tgz.
func versionFromFile(name, file string) (string, bool) {
	prefix := basename(name) + "-"
	if !strings.HasPrefix(file, prefix) || !strings.HasSuffix(file, ".tgz") || len(file) <= len(prefix)+4 {
		return "", false
	}
	v := file[len(prefix) : len(file)-len(".tgz")]
	return v, validVersion(v)
}

// tarballPath is the standard registry path of a version's tarball, relative
// to the registry base: <name>/-/<basename>-<version>.tgz.
func tarballPath(name, version string) string {
	return name + "/-/" + basename(name) + "-" + version + ".tgz"
}

// escapedName is how a document is requested: "@scope%2fname" for scoped names.
func escapedName(name string) string {
	return strings.Replace(name, "/", "%2f", 1)
}
