package api

// The HTTP contract: every request and response body the API reads or
// writes, and the functions that map runtime, store and workspace values
// onto them. Nothing else in the package serializes a type of another
// package; openapi.json describes these shapes and tests hold the two
// together (DESIGN §3: field names and types never change, fields may be added).

import (
	"time"

	"github.com/servcraft/servcraftd/runtime"
	"github.com/servcraft/servcraftd/snapshots/workspace"
	"github.com/servcraft/servcraftd/store"
	"github.com/servcraft/servcraftd/store/placement"
)

// Requests.

type createRequest struct {
	SessionID   string `json:"sessionId"`
	ProjectType string `json:"projectType"`
	From        string `json:"from"` // a running session whose workspace the new one starts as a copy of (projectType is its)
}

type sessionRequest struct {
	SessionID string `json:"sessionId"`
}

type executeRequest struct {
	SessionID string `json:"sessionId"`
	Code      string `json:"code"`
	Filename  string `json:"filename"`
	Stdin     string `json:"stdin"`
	TimeoutMs *int64 `json:"timeoutMs"` // nil: the runtime's default; capped at MaxExecTimeout
	RunID     string `json:"runId"`     // names the run for DELETE /run (stops.go); "": none
	StdinOpen bool   `json:"stdinOpen"` // stdin stays open after Stdin: POST /run/stdin sends more (needs RunID)
}

type shellRequest struct {
	SessionID  string `json:"sessionId"`
	Command    string `json:"command"`
	Background bool   `json:"background"`
	Stdin      string `json:"stdin"`
	TimeoutMs  *int64 `json:"timeoutMs"`
	RunID      string `json:"runId"` // names the run for DELETE /run (stops.go); "": none
	StdinOpen  bool   `json:"stdinOpen"`
}

// stdinRequest is POST /run/stdin.
type stdinRequest struct {
	SessionID string `json:"sessionId"`
	RunID     string `json:"runId"`
	Data      string `json:"data"`
	EOF       bool   `json:"eof"` // close the run's stdin after data
}

type syncRequest struct {
	SessionID string     `json:"sessionId"`
	Files     []FileNode `json:"files"`
	Mode      string     `json:"mode"` // "" or "merge" (write only), "replace" (also delete what the tree lacks)
}

type installRequest struct {
	SessionID string   `json:"sessionId"`
	Packages  []string `json:"packages"`
	TimeoutMs *int64   `json:"timeoutMs"`
	RunID     string   `json:"runId"` // names the install for DELETE /run (stops.go); "": none
}

// FileNode is one node of the frontend's file tree, as /sync receives it.
// A file without Content (the listing gave none: binary, over the size
// limit, not a regular file) is left as it is in the workspace, and not
// made when missing; so is one marked Binary or Truncated whose Content is
// empty (an echoed listing), and so is one whose Content is empty text
// (no encoding) where the workspace holds a file the listing gives without
// content: the frontend never had that content, so "" cannot be an edit.
// Emptying such a file takes "encoding":"base64" with "". Language and Expanded are the editor's, and
// the listing's path and size may be echoed too: all are ignored (names
// make paths).
type FileNode struct {
	Name      string     `json:"name"`
	Type      string     `json:"type"` // "file" or "folder"
	Content   *string    `json:"content"`
	Encoding  string     `json:"encoding"` // "" (UTF-8 text) or "base64"
	Language  string     `json:"language"`
	Children  []FileNode `json:"children"`
	Expanded  bool       `json:"expanded"`
	Binary    bool       `json:"binary"`
	Truncated bool       `json:"truncated"`
}

// terminalMessage is a text frame on the terminal WebSocket, both ways:
// "input" and "resize" from the client, "exit" to it.
type terminalMessage struct {
	Type     string `json:"type"`
	Cols     uint32 `json:"cols,omitempty"`
	Rows     uint32 `json:"rows,omitempty"`
	Data     string `json:"data,omitempty"`
	ExitCode *int   `json:"exitCode,omitempty"`
}

// sessionBody is a request body that names its session.
type sessionBody interface{ session() string }

func (r *createRequest) session() string  { return r.SessionID }
func (r *sessionRequest) session() string { return r.SessionID }
func (r *executeRequest) session() string { return r.SessionID }
func (r *shellRequest) session() string   { return r.SessionID }
func (r *syncRequest) session() string    { return r.SessionID }
func (r *installRequest) session() string { return r.SessionID }
func (r *stdinRequest) session() string   { return r.SessionID }

// Responses.

// errorBody is every error answer: {success:false, error, code}.
type errorBody struct {
	Success bool   `json:"success"`
	Error   string `json:"error"`
	Code    string `json:"code"`
}

type successResponse struct {
	Success bool `json:"success"`
}

type healthResponse struct {
	Success bool   `json:"success"`
	Status  string `json:"status"`
}

type readyResponse struct {
	Success bool   `json:"success"`
	Ready   bool   `json:"ready"`
	State   string `json:"state,omitempty"` // draining or drained, with code "draining"
	Error   string `json:"error,omitempty"`
	Code    string `json:"code,omitempty"`
	// Disk is the state filesystem's room against the reserve. A low disk
	// leaves the daemon ready: its sessions keep working, only new ones
	// are refused (507), and Disk.Low says so.
	Disk *diskStatus `json:"disk,omitempty"`
}

// diskStatus is the state filesystem's room against the reserve, as /readyz shows it.
type diskStatus struct {
	TotalBytes     int64  `json:"totalBytes"`
	FreeBytes      int64  `json:"freeBytes"`
	ReserveBytes   int64  `json:"reserveBytes"`
	WorkspaceBytes int64  `json:"workspaceBytes"`   // what a new workspace takes at once: its quota as an image, 0 as a btrfs subvolume
	Backend        string `json:"workspaceBackend"` // image or btrfs; with btrfs the bytes are the workspace pool's
	WrittenBytes   int64  `json:"writtenBytes"`     // what the workspaces hold, summed
	Workspaces     int    `json:"workspaces"`       // workspace volumes here, warm containers' included
	Low            bool   `json:"low"`
}

type containerResponse struct {
	Success     bool      `json:"success"`
	ContainerID string    `json:"containerId"`
	ExposedPort int       `json:"exposedPort"`
	PreviewURL  string    `json:"previewUrl"` // the exposed port's preview: host form, else /p/{id}/; with a link when previews need the token
	ProjectType string    `json:"projectType"`
	IsExtended  bool      `json:"isExtended"`
	Existing    bool      `json:"existing"`
	Timeout     int64     `json:"timeout"` // idle timeout, ms
	CreatedAt   time.Time `json:"createdAt"`
	ExpiresAt   time.Time `json:"expiresAt"`
	Image       string    `json:"image"`
	// DependenciesReady: the starter's node_modules is there; Notice says
	// what the session lacks when it is not.
	DependenciesReady bool   `json:"dependenciesReady"`
	Notice            string `json:"notice,omitempty"`
}

type containerInfoResponse struct {
	Success      bool      `json:"success"`
	Exists       bool      `json:"exists"`
	SessionID    string    `json:"sessionId"`
	ContainerID  string    `json:"containerId"`
	ProjectType  string    `json:"projectType"`
	IsExtended   bool      `json:"isExtended"`
	ExposedPort  int       `json:"exposedPort"`
	PreviewURL   string    `json:"previewUrl"` // as in containerResponse
	CreatedAt    time.Time `json:"createdAt"`
	LastAccessed time.Time `json:"lastAccessed"`
	ExpiresAt    time.Time `json:"expiresAt"`
	Status       string    `json:"status"`
	Image        string    `json:"image"`
	Usage        usage     `json:"usage"`
}

// containerMissing is GET /container's 404: an error body with exists:false.
type containerMissing struct {
	errorBody
	Exists bool `json:"exists"`
}

type usage struct {
	MemoryBytes         uint64  `json:"memoryBytes"`
	MemoryLimitBytes    uint64  `json:"memoryLimitBytes"`
	CPUSeconds          float64 `json:"cpuSeconds"`
	Pids                uint64  `json:"pids"`
	WorkspaceBytes      int64   `json:"workspaceBytes"`
	WorkspaceLimitBytes int64   `json:"workspaceLimitBytes"`
}

type extendResponse struct {
	Success    bool      `json:"success"`
	IsExtended bool      `json:"isExtended"`
	ExpiresAt  time.Time `json:"expiresAt"`
}

// runResponse answers execute and shell, and is the "exit" event of their streams.
// stdinResponse answers POST /run/stdin.
type stdinResponse struct {
	Success bool   `json:"success"`
	RunID   string `json:"runId"`
	Bytes   int    `json:"bytes"`
	EOF     bool   `json:"eof"`
}

// stopResponse answers DELETE /run.
type stopResponse struct {
	Success bool   `json:"success"`
	Stopped bool   `json:"stopped"`
	RunID   string `json:"runId"`
}

type runResponse struct {
	Success    bool   `json:"success"`
	Output     string `json:"output"`
	Error      string `json:"error"`
	ExitCode   int    `json:"exitCode"`
	Signal     string `json:"signal,omitempty"`
	TimedOut   bool   `json:"timedOut"`
	Stopped    bool   `json:"stopped"` // ended by DELETE /run
	OOMKilled  bool   `json:"oomKilled"`
	Truncated  bool   `json:"truncated"`
	DurationMs int64  `json:"durationMs"`
	Background bool   `json:"background"`
	// Warm says a waiting runner served the run (no process start in it).
	Warm bool `json:"warm"`
	// TypeScript says how a TypeScript file ran: "esbuild" (transformed by
	// the daemon) or "tsx: <why the daemon left it to tsx>".
	TypeScript string `json:"typeScript,omitempty"`
}

// backgroundResponse answers a shell command started with background:true.
type backgroundResponse struct {
	Success    bool    `json:"success"`
	Background bool    `json:"background"`
	PID        string  `json:"pid"`
	Process    process `json:"process"`
	Output     string  `json:"output"`
	Error      string  `json:"error"`
	ExitCode   int     `json:"exitCode"`
}

type process struct {
	ID        string     `json:"id"`
	Command   string     `json:"command"`
	StartedAt time.Time  `json:"startedAt"`
	Running   bool       `json:"running"`
	ExitCode  *int       `json:"exitCode"`
	ExitedAt  *time.Time `json:"exitedAt,omitempty"`
}

type processesResponse struct {
	Success   bool      `json:"success"`
	Processes []process `json:"processes"`
}

type processResponse struct {
	Success bool    `json:"success"`
	Process process `json:"process"`
}

type processLogResponse struct {
	Success   bool    `json:"success"`
	Process   process `json:"process"`
	Output    string  `json:"output"`
	Truncated bool    `json:"truncated"`
}

// outputEvent is an "output", "stdout" or "stderr" server-sent event; the
// first "output" event of a log stream says whether the kept log was cut.
type outputEvent struct {
	Data      string `json:"data"`
	Truncated *bool  `json:"truncated,omitempty"`
}

// streamErrorEvent is the "error" event of a run stream that failed after it began.
type streamErrorEvent struct {
	errorBody
	Status int `json:"status"`
}

type syncResponse struct {
	Success bool  `json:"success"`
	Written int   `json:"written"`
	Deleted int   `json:"deleted"`
	Bytes   int64 `json:"bytes"`
	Kept    int   `json:"kept"` // files sent without content, left as they were
}

type filesResponse struct {
	Success bool       `json:"success"`
	Files   []fileInfo `json:"files"`
}

// fileInfo is one entry of the frontend's flat file list.
type fileInfo struct {
	Name      string  `json:"name"`
	Type      string  `json:"type"`              // "file" or "folder"
	Path      string  `json:"path"`              // relative to the workspace root, no leading "/"
	Content   *string `json:"content,omitempty"` // a file's whole text; left out when not read (binary, truncated, not a regular file); "" on folders
	Language  string  `json:"language"`
	Size      int64   `json:"size"`
	Truncated bool    `json:"truncated"` // content left out (file) or entries left out (folder)
	Binary    bool    `json:"binary"`    // not text: no content
}

type installResponse struct {
	Success     bool           `json:"success"`
	Output      string         `json:"output"`
	Error       string         `json:"error"`
	ExitCode    int            `json:"exitCode"`
	TimedOut    bool           `json:"timedOut"`
	Stopped     bool           `json:"stopped"` // ended by DELETE /run
	Truncated   bool           `json:"truncated"`
	Installed   []installedPkg `json:"installed"`
	DurationMs  int64          `json:"durationMs"`
	CacheHits   int64          `json:"cacheHits"`
	CacheMisses int64          `json:"cacheMisses"`
	FromLayer   bool           `json:"fromLayer"` // the starter's dependencies were restored, npm did not run
}

type installedPkg struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// installError is a failed install after npm ran: the error body with npm's output.
type installError struct {
	errorBody
	Output   string   `json:"output"`
	NpmError string   `json:"npmError"`
	NotFound []string `json:"notFound,omitempty"`
}

// Mappings from the runtime, the store and the workspace.

func newDiskStatus(st runtime.DiskStatus) *diskStatus {
	return &diskStatus{TotalBytes: st.TotalBytes, FreeBytes: st.FreeBytes, ReserveBytes: st.ReserveBytes,
		WorkspaceBytes: st.WorkspaceBytes, Backend: st.Backend, WrittenBytes: st.WrittenBytes, Workspaces: st.Workspaces, Low: st.Low}
}

func newContainerResponse(s store.Session, existing bool, opt Options) containerResponse {
	return containerResponse{
		Success:     true,
		ContainerID: s.ContainerID,
		ExposedPort: opt.ExposedPort,
		ProjectType: s.ProjectType,
		IsExtended:  s.Extended,
		Existing:    existing,
		Timeout:     opt.IdleTimeout.Milliseconds(),
		CreatedAt:   s.CreatedAt,
		ExpiresAt:   s.ExpiresAt,
		Image:       s.Image,

		DependenciesReady: s.DependenciesMissing == "",
		Notice:            s.DependenciesMissing,
	}
}

func newContainerInfoResponse(info runtime.Info, opt Options) containerInfoResponse {
	u := info.Usage
	return containerInfoResponse{
		Success:      true,
		Exists:       true,
		SessionID:    info.SessionID,
		ContainerID:  info.ContainerID,
		ProjectType:  info.ProjectType,
		IsExtended:   info.Extended,
		ExposedPort:  opt.ExposedPort,
		CreatedAt:    info.CreatedAt,
		LastAccessed: info.LastActiveAt,
		ExpiresAt:    info.ExpiresAt,
		Status:       info.Status,
		Image:        info.Image,
		Usage: usage{MemoryBytes: u.MemoryBytes, MemoryLimitBytes: u.MemoryLimitBytes, CPUSeconds: u.CPUSeconds,
			Pids: u.Pids, WorkspaceBytes: u.WorkspaceBytes, WorkspaceLimitBytes: u.WorkspaceLimitBytes},
	}
}

func newExtendResponse(s store.Session) extendResponse {
	return extendResponse{Success: true, IsExtended: s.Extended, ExpiresAt: s.ExpiresAt}
}

// newRunResponse maps a run's result onto the answer: success is exit code 0 in time.
func newRunResponse(r runtime.ExecResult) runResponse {
	return runResponse{
		Success:    r.ExitCode == 0 && !r.TimedOut && !r.Stopped,
		Output:     r.Stdout,
		Error:      r.Stderr,
		ExitCode:   r.ExitCode,
		Signal:     r.Signal,
		TimedOut:   r.TimedOut,
		Stopped:    r.Stopped,
		OOMKilled:  r.OOMKilled,
		Truncated:  r.Truncated,
		DurationMs: r.Duration.Milliseconds(),
		Warm:       r.Warm,
		TypeScript: r.TypeScript,
	}
}

func newProcess(p runtime.Process) process {
	return process{ID: p.ID, Command: p.Command, StartedAt: p.StartedAt, Running: p.Running, ExitCode: p.ExitCode, ExitedAt: p.ExitedAt}
}

func newProcesses(ps []runtime.Process) []process {
	out := make([]process, 0, len(ps))
	for _, p := range ps {
		out = append(out, newProcess(p))
	}
	return out
}

func newSyncResponse(r workspace.SyncResult) syncResponse {
	return syncResponse{Success: true, Written: r.Written, Deleted: r.Deleted, Bytes: r.Bytes, Kept: r.Kept}
}

func newFilesResponse(files []workspace.FileInfo) filesResponse {
	out := make([]fileInfo, 0, len(files))
	for _, f := range files {
		fi := fileInfo{Name: f.Name, Type: f.Type, Path: f.Path, Language: f.Language,
			Size: f.Size, Truncated: f.Truncated, Binary: f.Binary}
		if f.HasContent || f.Type == workspace.TypeFolder {
			fi.Content = &f.Content
		}
		out = append(out, fi)
	}
	return filesResponse{Success: true, Files: out}
}

func newInstallResponse(r runtime.InstallResult) installResponse {
	installed := make([]installedPkg, 0, len(r.Installed))
	for _, p := range r.Installed {
		installed = append(installed, installedPkg{Name: p.Name, Version: p.Version})
	}
	return installResponse{
		Success:     r.ExitCode == 0 && !r.Stopped,
		Output:      r.Stdout,
		Error:       r.Stderr,
		ExitCode:    r.ExitCode,
		TimedOut:    r.TimedOut,
		Stopped:     r.Stopped,
		Truncated:   r.Truncated,
		Installed:   installed,
		DurationMs:  r.Duration.Milliseconds(),
		CacheHits:   r.CacheHits,
		CacheMisses: r.CacheMisses,
		FromLayer:   r.FromLayer,
	}
}

func newInstallError(err error, code string, r runtime.InstallResult) installError {
	return installError{errorBody: newErrorBody(err.Error(), code), Output: r.Stdout, NpmError: r.Stderr, NotFound: r.NotFound}
}

// statusResponse is GET /status: the node and, in cluster mode, its peers.
type statusResponse struct {
	Success  bool          `json:"success"`
	NodeID   string        `json:"nodeId,omitempty"`
	State    string        `json:"state"` // accepting, draining, drained
	Sessions int           `json:"sessions"`
	Pooled   int           `json:"pooled"`
	Capacity int           `json:"capacity"`     // 0: no limit
	Free     *int          `json:"capacityFree"` // null: no limit
	Cluster  []clusterNode `json:"cluster,omitempty"`
	Error    string        `json:"clusterError,omitempty"`
}

// clusterNode is one node's record as /status shows it.
type clusterNode struct {
	ID        string    `json:"id"`
	Addr      string    `json:"addr"`
	State     string    `json:"state"`
	Capacity  int       `json:"capacity"`
	Sessions  int       `json:"sessions"`
	UpdatedAt time.Time `json:"updatedAt"`
}

func toClusterNodes(nodes []placement.Node) []clusterNode {
	out := make([]clusterNode, 0, len(nodes))
	for _, n := range nodes {
		out = append(out, clusterNode{ID: n.ID, Addr: n.Addr, State: string(n.State), Capacity: n.Capacity,
			Sessions: n.Sessions, UpdatedAt: n.UpdatedAt})
	}
	return out
}

// drainResponse answers POST and DELETE /api/admin/drain.
type drainResponse struct {
	Success  bool   `json:"success"`
	State    string `json:"state"`
	Sessions int    `json:"sessions"`
}
