package api

import (
	"time"

	"github.com/servcraft/servcraftd/runtime"
)

type createRequest struct {
	SessionID   string `json:"sessionId"`
	ProjectType string `json:"projectType"`
}

type sessionRequest struct {
	SessionID string `json:"sessionId"`
}

type containerResponse struct {
	Success     bool      `json:"success"`
	ContainerID string    `json:"containerId"`
	ExposedPort int       `json:"exposedPort"`
	ProjectType string    `json:"projectType"`
	IsExtended  bool      `json:"isExtended"`
	Existing    bool      `json:"existing"`
	Timeout     int64     `json:"timeout"` // idle timeout, ms
	CreatedAt   time.Time `json:"createdAt"`
	ExpiresAt   time.Time `json:"expiresAt"`
	Image       string    `json:"image"`
}

type containerInfoResponse struct {
	Success      bool          `json:"success"`
	Exists       bool          `json:"exists"`
	SessionID    string        `json:"sessionId"`
	ContainerID  string        `json:"containerId"`
	ProjectType  string        `json:"projectType"`
	IsExtended   bool          `json:"isExtended"`
	ExposedPort  int           `json:"exposedPort"`
	CreatedAt    time.Time     `json:"createdAt"`
	LastAccessed time.Time     `json:"lastAccessed"`
	ExpiresAt    time.Time     `json:"expiresAt"`
	Status       string        `json:"status"`
	Image        string        `json:"image"`
	Usage        runtime.Usage `json:"usage"`
}

type extendResponse struct {
	Success    bool      `json:"success"`
	IsExtended bool      `json:"isExtended"`
	ExpiresAt  time.Time `json:"expiresAt"`
}

type executeRequest struct {
	SessionID string `json:"sessionId"`
	Code      string `json:"code"`
	Filename  string `json:"filename"`
	Stdin     string `json:"stdin"`
	TimeoutMs *int64 `json:"timeoutMs"`
}

type shellRequest struct {
	SessionID  string `json:"sessionId"`
	Command    string `json:"command"`
	Background bool   `json:"background"`
	Stdin      string `json:"stdin"`
	TimeoutMs  *int64 `json:"timeoutMs"`
}

// runResponse answers execute and shell: success is exit code 0.
type runResponse struct {
	Success    bool   `json:"success"`
	Output     string `json:"output"`
	Error      string `json:"error"`
	ExitCode   int    `json:"exitCode"`
	Signal     string `json:"signal,omitempty"`
	TimedOut   bool   `json:"timedOut"`
	OOMKilled  bool   `json:"oomKilled"`
	Truncated  bool   `json:"truncated"`
	DurationMs int64  `json:"durationMs"`
	Background bool   `json:"background"`
}

func newRunResponse(r runtime.ExecResult) runResponse {
	return runResponse{
		Success:    r.ExitCode == 0 && !r.TimedOut,
		Output:     r.Stdout,
		Error:      r.Stderr,
		ExitCode:   r.ExitCode,
		Signal:     r.Signal,
		TimedOut:   r.TimedOut,
		OOMKilled:  r.OOMKilled,
		Truncated:  r.Truncated,
		DurationMs: r.Duration.Milliseconds(),
	}
}

// sessionBody is a JSON request that names a session.
type sessionBody interface{ session() string }

func (r *createRequest) session() string  { return r.SessionID }
func (r *sessionRequest) session() string { return r.SessionID }
func (r *executeRequest) session() string { return r.SessionID }
func (r *shellRequest) session() string   { return r.SessionID }
func (r *syncRequest) session() string    { return r.SessionID }
func (r *installRequest) session() string { return r.SessionID }
