package api

import (
	"errors"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestValidPackageSpec(t *testing.T) {
	for _, tc := range []struct {
		spec  string
		cause error
	}{
		{"fastify", nil},
		{"is-number@7.0.0", nil},
		{"@fastify/cors@^9", nil},
		{"@fastify/cors", nil},
		{"react@>=18 <19", nil},
		{"lodash@~4.17", nil},
		{"express@4.x", nil},
		{"a@1.2.3 - 2.3.4", nil},
		{"a@^1 || ^2", nil},
		{"a@*", nil},
		{"typescript@next", nil},
		{"pkg@1.0.0-beta.1+build.5", nil},
		{"JSONStream@1", nil},
		{"", errdefs.ErrInvalidArgument},
		{strings.Repeat("a", 300), errdefs.ErrInvalidArgument},
		{"https://evil.example/x.tgz", errdefs.ErrInvalidArgument},
		{"git+https://github.com/a/b.git", errdefs.ErrInvalidArgument},
		{"github:a/b", errdefs.ErrInvalidArgument},
		{"file:../x", errdefs.ErrInvalidArgument},
		{"link:../x", errdefs.ErrInvalidArgument},
		{"x@npm:y@1", errdefs.ErrInvalidArgument},
		{"alias@npm:lodash", errdefs.ErrInvalidArgument},
		{"./local", errdefs.ErrInvalidArgument},
		{"../up", errdefs.ErrInvalidArgument},
		{"/abs/path", errdefs.ErrInvalidArgument},
		{"~/home", errdefs.ErrInvalidArgument},
		{"a/b", errdefs.ErrInvalidArgument},
		{"x; rm -rf /", errdefs.ErrInvalidArgument},
		{"x@1 && curl", errdefs.ErrInvalidArgument},
		{"x@$(id)", errdefs.ErrInvalidArgument},
		{"x@`id`", errdefs.ErrInvalidArgument},
		{"x@1|sh", errdefs.ErrInvalidArgument},
		{"x@>1 >", errdefs.ErrInvalidArgument},
		{"x@", errdefs.ErrInvalidArgument},
		{"-x", errdefs.ErrInvalidArgument},
		{"--registry=http://x", errdefs.ErrInvalidArgument},
		{"x@1\n2", errdefs.ErrInvalidArgument},
		{"x@||", errdefs.ErrInvalidArgument},
		{"@scope", errdefs.ErrInvalidArgument},
		{".bin", errdefs.ErrInvalidArgument},
	} {
		err := validPackageSpec(tc.spec)
		if tc.cause == nil && err != nil || tc.cause != nil && !errors.Is(err, tc.cause) {
			t.Errorf("validPackageSpec(%q) = %v, want %v", tc.spec, err, tc.cause)
		}
	}
}
