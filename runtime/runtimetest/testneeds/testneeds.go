// Package testneeds says what a test needs of the machine: a test whose need
// is missing fails under CI (where everything must be there) and skips with
// the reason elsewhere. It imports nothing of the module, so the tests of
// any package, runtime's own included, can use it.
package testneeds

import (
	"os"
	"testing"
)

// Unavailable fails the test under CI and skips it elsewhere.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("integration test cannot run in CI: "+format, args...)
	}
	t.Skipf("skipping integration test: "+format, args...)
}

// Root is for a test that writes workspace files (they are chowned to the
// session's user): without root it fails under CI, which runs as root, and
// skips elsewhere.
func Root(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("needs root to chown workspace files")
	}
	t.Skip("needs root to chown workspace files")
}
