package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/containerd/errdefs"

	"github.com/servcraft/servcraftd/store"
)

// LanguageServerPath is the TypeScript language server of the toolchain
// (typescript-language-server over the toolchain's typescript), inside a
// session.
const LanguageServerPath = ToolchainPath + "/node_modules/typescript-language-server/lib/cli.mjs"

// ErrNoLanguageServer is the cause of an open refused because the toolchain
// has no language server (it is built without one, or there is none).
var ErrNoLanguageServer = errors.New("the toolchain has no TypeScript language server (scripts/build-toolchain.sh installs it)")

// OpenLanguageServer starts the TypeScript language server in the session,
// speaking LSP on its stdin and stdout (Content-Length framing), as the
// sandbox user in /workspace, within the session's limits like any run. It
// runs until Close (which ends it and everything it started) or until it
// exits; its stderr is dropped. The returned Terminal has no PTY.
func (runs *Runs) OpenLanguageServer(ctx context.Context, sessionID string) (*Terminal, error) {
	host := filepath.Join(runs.cfg.ToolchainDir, "node_modules", "typescript-language-server", "lib", "cli.mjs")
	if _, err := os.Stat(host); runs.cfg.ToolchainDir == "" || err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoLanguageServer, errdefs.ErrNotImplemented)
	}
	var t *Terminal
	err := runs.table.withLive(ctx, sessionID, func(l *liveSession, _ store.Session) (err error) {
		t, err = startAttached(ctx, l, runSpec{id: "lsp-" + randomHex(6),
			args:   []string{runs.cfg.NodePath, LanguageServerPath, "--stdio"},
			env:    []string{"NODE_OPTIONS=--max-old-space-size=256"},
			stderr: io.Discard}, nil)
		if err != nil {
			return fmt.Errorf("start the language server in %s: %w", sessionID, err)
		}
		return nil
	})
	return t, err
}
