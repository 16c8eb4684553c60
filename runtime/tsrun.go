package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	containerd "github.com/containerd/containerd/v2/client"

	"github.com/servcraft/servcraftd/runtime/tsprogram"
)

// A TypeScript program is transformed by the daemon (runtime/tsprogram) and
// run on a plain JavaScript runner when tsprogram can make its run equal to
// tsx's; otherwise it keeps tsx. These bound what one plan reads: past them
// the program is left to tsx, not refused.
const (
	tsProgramMaxFiles = 256
	tsProgramMaxBytes = 4 << 20
)

// tsRunPayload is what a runner reads after a `<file>\0<n>` line (see
// runnerSource): the program's files as JavaScript, whether they are ES
// modules and, if so, what their relative imports name; the execArgv a
// cold TypeScript run has (so process.execArgv and the children a program
// forks are those of tsx), and tsx's CommonJS API for a TypeScript file a
// CommonJS program loads that is not in Files.
type tsRunPayload struct {
	Files    map[string]string            `json:"files"`
	Module   bool                         `json:"module,omitempty"`
	Imports  map[string]map[string]string `json:"imports,omitempty"`
	ExecArgv []string                     `json:"execArgv"`
	TSX      string                       `json:"tsx"`
}

// tsxCJSAPI is tsx's CommonJS API in the sandbox (register() installs its hooks).
const tsxCJSAPI = ToolchainPath + "/node_modules/tsx/dist/cjs/api/index.cjs"

// imageNodeVersion is the image's node version from its NODE_VERSION
// (servcraft-image and the official node images set it), else "20", the
// major this daemon serves.
func imageNodeVersion(ctx context.Context, img containerd.Image) string {
	if img != nil {
		if spec, err := img.Spec(ctx); err == nil {
			for _, kv := range spec.Config.Env {
				if v, ok := strings.CutPrefix(kv, "NODE_VERSION="); ok && v != "" {
					return strings.TrimPrefix(v, "v")
				}
			}
		}
	}
	return "20"
}

// tsPlan is a TypeScript program ready for a runner: the line and payload
// it reads, and whether the program is ES modules (a runner of the
// ES-module kind runs it) or CommonJS (a JavaScript runner does).
type tsPlan struct {
	line   string
	module bool
}

// planTypeScript transforms the TypeScript program of the workspace (a
// host path) whose main file is script, and returns what a runner reads to
// run it, or why it is left to tsx.
func planTypeScript(workspace, script, nodeVersion string) (plan tsPlan, why string) {
	root, err := os.OpenRoot(workspace)
	if err != nil {
		return tsPlan{}, fmt.Sprintf("open workspace: %v", err)
	}
	defer root.Close()
	if nodeVersion == "" {
		nodeVersion = "20"
	}
	prog, err := tsprogram.Plan(root, script, tsprogram.Options{Mount: WorkspacePath,
		NodeVersion: nodeVersion, MaxFiles: tsProgramMaxFiles, MaxBytes: tsProgramMaxBytes})
	if err != nil {
		var fb *tsprogram.Fallback
		if errors.As(err, &fb) {
			return tsPlan{}, fb.Reason
		}
		return tsPlan{}, err.Error()
	}
	payload, err := json.Marshal(tsRunPayload{Files: prog.Files, Module: prog.Module, Imports: prog.Imports,
		ExecArgv: scriptTS.execArgv(), TSX: tsxCJSAPI})
	if err != nil {
		return tsPlan{}, fmt.Sprintf("encode the program: %v", err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s/%s\x00%d\n", WorkspacePath, script, len(payload))
	b.Write(payload)
	return tsPlan{line: b.String(), module: prog.Module}, ""
}

// logTypeScriptPath says at debug level which way a TypeScript run went.
func logTypeScriptPath(sessionID, script, why string) {
	if why == "" {
		slog.Debug("typescript transformed ahead of the run", "session", sessionID, "script", script)
		return
	}
	slog.Debug("typescript left to tsx", "session", sessionID, "script", script, "why", why)
}
