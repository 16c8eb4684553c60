package npmproxy

import (
	"crypto/sha1"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestValidName(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cause error
	}{
		{"is-number", nil},
		{"fastify", nil},
		{"lodash.merge", nil},
		{"a_b-c.d9", nil},
		{"@types/node", nil},
		{"@scope/.dotted", nil}, // validate-npm-package-name checks the leading '.' on the whole name only
		{strings.Repeat("a", 214), nil},
		{strings.Repeat("a", 215), errdefs.ErrInvalidArgument},
		{"", errdefs.ErrInvalidArgument},
		{".hidden", errdefs.ErrInvalidArgument},
		{"_private", errdefs.ErrInvalidArgument},
		{"JSONStream", nil},
		{"@scope/UpperCase", errdefs.ErrInvalidArgument},
		{"node_modules", errdefs.ErrInvalidArgument},
		{"favicon.ico", errdefs.ErrInvalidArgument},
		{"with space", errdefs.ErrInvalidArgument},
		{"tilde~", errdefs.ErrInvalidArgument},
		{"paren(s)", errdefs.ErrInvalidArgument},
		{"bang!", errdefs.ErrInvalidArgument},
		{"star*", errdefs.ErrInvalidArgument},
		{"quote'", errdefs.ErrInvalidArgument},
		{"colon:x", errdefs.ErrInvalidArgument},
		{"@scope", errdefs.ErrInvalidArgument},
		{"@/pkg", errdefs.ErrInvalidArgument},
		{"@scope/", errdefs.ErrInvalidArgument},
		{"@scope/.", errdefs.ErrInvalidArgument},
		{"@Scope/pkg", errdefs.ErrInvalidArgument},
		{"@scope/a/b", errdefs.ErrInvalidArgument},
		{"a/b", errdefs.ErrInvalidArgument},
	} {
		err := ValidName(tc.name)
		if !errors.Is(err, tc.cause) || (tc.cause == nil) != (err == nil) {
			t.Errorf("ValidName(%q) = %v, want %v", tc.name, err, tc.cause)
		}
	}
}

func TestVersionFromFile(t *testing.T) {
	for _, tc := range []struct {
		name, file, version string
		ok                  bool
	}{
		{"is-number", "is-number-7.0.0.tgz", "7.0.0", true},
		{"@scope/pkg", "pkg-2.0.0-beta.1+build.5.tgz", "2.0.0-beta.1+build.5", true},
		{"a-b", "a-b-1.0.0.tgz", "1.0.0", true},
		{"@scope/pkg", "scope-pkg-2.0.0.tgz", "", false},
		{"is-number", "other-7.0.0.tgz", "", false},
		{"is-number", "is-number-.tgz", "", false},
		{"is-number", "is-number-7.0.0.tar", "", false},
		{"is-number", "is-number-7..0.tgz", "", false},
		{"is-number", "is-number--7.0.0.tgz", "", false},
		{"is-number", "is-number-7.0.0_x.tgz", "", false},
	} {
		v, ok := versionFromFile(tc.name, tc.file)
		if ok != tc.ok || (ok && v != tc.version) {
			t.Errorf("versionFromFile(%q, %q) = %q, %v; want %q, %v", tc.name, tc.file, v, ok, tc.version, tc.ok)
		}
	}
}

func TestParseChecksum(t *testing.T) {
	data := []byte("tarball bytes")
	s512 := sha512.Sum512(data)
	s1 := sha1.Sum(data)
	sri512 := "sha512-" + base64.StdEncoding.EncodeToString(s512[:])
	sri1 := "sha1-" + base64.StdEncoding.EncodeToString(s1[:])
	hex1 := hex.EncodeToString(s1[:])
	for _, tc := range []struct {
		desc, integrity, shasum string
		alg                     string
		digest                  []byte
	}{
		{"sha512 SRI", sri512, hex1, "sha512", s512[:]},
		{"strongest of several", sri1 + " " + sri512, "", "sha512", s512[:]},
		{"SRI options ignored", sri512 + "?foo", "", "sha512", s512[:]},
		{"shasum only", "", hex1, "sha1", s1[:]},
		{"sha1 SRI", sri1, "", "sha1", s1[:]},
		{"unknown algorithm falls back to shasum", "md5-AAAA", hex1, "sha1", s1[:]},
		{"wrong digest length", "sha512-" + base64.StdEncoding.EncodeToString(s1[:]), "", "", nil},
		{"nothing", "", "", "", nil},
		{"bad hex", "", "zz", "", nil},
	} {
		c := parseChecksum(tc.integrity, tc.shasum)
		if c.alg != tc.alg || string(c.digest) != string(tc.digest) {
			t.Errorf("%s: got %s %x, want %s %x", tc.desc, c.alg, c.digest, tc.alg, tc.digest)
		}
	}
}

func TestTarballPathAndEscapedName(t *testing.T) {
	if got := tarballPath("@scope/pkg", "1.2.3"); got != "@scope/pkg/-/pkg-1.2.3.tgz" {
		t.Errorf("tarballPath = %q", got)
	}
	if got := escapedName("@scope/pkg"); got != "@scope%2fpkg" {
		t.Errorf("escapedName = %q", got)
	}
	if got := escapedName("plain"); got != "plain" {
		t.Errorf("escapedName = %q", got)
	}
}
