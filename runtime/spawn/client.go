package spawn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// ErrUnreachable is the error of a Start that found no spawner listening.
var ErrUnreachable = errors.New("no spawner listening")

// Process is a run started by a spawner.
type Process struct {
	// Pid is the process's pid in the container's pid namespace.
	Pid  int
	conn *net.UnixConn
}

// Start asks the spawner listening at socket (a path the caller can reach,
// such as /proc/<pid>/root/run/servcraft/spawner.sock from the host) to
// start req with stdin, stdout and stderr. The caller closes its copies of
// the three files once Start returns.
func Start(ctx context.Context, socket string, req Request, stdin, stdout, stderr *os.File) (*Process, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unixpacket", socket)
	if err != nil {
		return nil, fmt.Errorf("connect to spawner: %w (%w)", ErrUnreachable, err)
	}
	conn := c.(*net.UnixConn)
	ok := false
	defer func() {
		if !ok {
			conn.Close()
		}
	}()
	if deadline, has := ctx.Deadline(); has {
		_ = conn.SetDeadline(deadline)
	}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encode spawn request: %w", err)
	}
	rights := unix.UnixRights(int(stdin.Fd()), int(stdout.Fd()), int(stderr.Fd()))
	if _, _, err := conn.WriteMsgUnix(b, rights, nil); err != nil {
		return nil, fmt.Errorf("send spawn request: %w", err)
	}
	var started Started
	if err := readJSON(conn, &started); err != nil {
		return nil, fmt.Errorf("spawner's answer: %w", err)
	}
	if started.Error != "" {
		return nil, fmt.Errorf("spawner: %s", started.Error)
	}
	_ = conn.SetDeadline(time.Time{})
	ok = true
	return &Process{Pid: started.Pid, conn: conn}, nil
}

// Wait waits for the process to end and returns its status (128+n for a
// death by signal n). It fails if the spawner went away first.
func (p *Process) Wait() (uint32, error) {
	defer p.conn.Close()
	var exited Exited
	if err := readJSON(p.conn, &exited); err != nil {
		return 0, fmt.Errorf("wait for pid %d: %w", p.Pid, err)
	}
	return exited.Status, nil
}

// Close gives up on the process's status.
func (p *Process) Close() error { return p.conn.Close() }

func readJSON(conn *net.UnixConn, v any) error {
	buf := make([]byte, 4096)
	n, err := conn.Read(buf)
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("connection closed")
	}
	return json.Unmarshal(buf[:n], v)
}
