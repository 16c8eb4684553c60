package runtime

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/servcraft/servcraftd/store"
)

// Previews resolves preview addresses to sessions and connects into them.
type Previews struct {
	*previewIndex
	table sessionTable
}

// PreviewDialTimeout bounds a connection to a session's preview port.
const PreviewDialTimeout = 5 * time.Second

// DialSession connects to 127.0.0.1:port inside the session's own network
// namespace: the session's loopback, never the host's and never another
// session's. It counts as activity.
func (p *Previews) DialSession(ctx context.Context, sessionID string, port int) (net.Conn, error) {
	var conn net.Conn
	err := p.table.withLive(ctx, sessionID, func(l *liveSession, _ store.Session) error {
		err := inNetns(l.task.Pid(), func() (err error) {
			d := net.Dialer{Timeout: PreviewDialTimeout}
			conn, err = d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
			return err
		})
		if err != nil {
			return fmt.Errorf("session %q port %d: %w", sessionID, port, err)
		}
		return nil
	})
	return conn, err
}
