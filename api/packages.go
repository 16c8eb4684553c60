package api

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/servcraft/servcraftd/runtime/npmproxy"
)

// maxSpecLen bounds one package spec.
const maxSpecLen = 256

var (
	// A comparator of a semver range: an optional operator and a (partial) version.
	comparatorPattern = regexp.MustCompile(`^(\^|~|>=|<=|>|<|=)?v?(0|[1-9][0-9]*|[xX*])(\.(0|[1-9][0-9]*|[xX*])){0,2}(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$`)
	// A dist-tag such as latest, next or beta.
	tagPattern = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9._-]{0,63}$`)
)

// validPackageSpec accepts a registry package with an optional exact
// version, semver range or dist-tag: "fastify", "@fastify/cors@^9",
// "react@>=18 <19", "typescript@next". URLs, git, file:, link:, npm:
// aliases, paths and anything outside that grammar are refused, so only
// registry packages ever reach npm (and never a shell).
func validPackageSpec(spec string) error {
	if spec == "" || len(spec) > maxSpecLen {
		return invalid("package %q: empty or longer than %d bytes", spec, maxSpecLen)
	}
	for _, c := range []byte(spec) {
		if c < 0x20 || c > 0x7e {
			return invalid("package %q: control or non-ASCII character", spec)
		}
	}
	if spec[0] == '-' {
		return invalid("package %q: must not start with '-'", spec)
	}
	name, version := spec, ""
	if at := strings.LastIndexByte(spec, '@'); at > 0 {
		name, version = spec[:at], spec[at+1:]
		if version == "" {
			return invalid("package %q: nothing after @", spec)
		}
	}
	if strings.Contains(spec, ":") || strings.HasPrefix(spec, ".") || strings.HasPrefix(spec, "/") || strings.HasPrefix(spec, "~") {
		return invalid("package %q: only registry packages can be installed, not URLs, git, file:, link:, npm: aliases or paths", spec)
	}
	if err := npmproxy.ValidName(name); err != nil {
		return fmt.Errorf("package %q: %w", spec, err) // already an invalid argument
	}
	if version != "" && !validRange(version) && !tagPattern.MatchString(version) {
		return invalid("package %q: %q is not a version, semver range or dist-tag", spec, version)
	}
	return nil
}

// validRange checks a semver range set: ranges joined by "||", each a list
// of comparators separated by spaces or one "a - b" hyphen range.
func validRange(r string) bool {
	for _, part := range strings.Split(r, "||") {
		part = strings.TrimSpace(part)
		if part == "" {
			return false
		}
		if lo, hi, ok := strings.Cut(part, " - "); ok {
			if !isPartial(strings.TrimSpace(lo)) || !isPartial(strings.TrimSpace(hi)) {
				return false
			}
			continue
		}
		for _, c := range strings.Fields(part) {
			if !comparatorPattern.MatchString(c) {
				return false
			}
		}
	}
	return true
}

// isPartial is a comparator without an operator.
func isPartial(s string) bool {
	return comparatorPattern.MatchString(s) && !strings.ContainsAny(s[:1], "^~<>=")
}
