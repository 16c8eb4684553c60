package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/servcraft/servcraftd/snapshots/templates"
)

// starterPoll is how often both sides of the starter row ask whether the
// starter's "/" answers yet: the same for both, so it costs both alike.
const starterPoll = 10 * time.Millisecond

// starterReadyWait bounds the wait for the daemon's starter layer (a first
// run builds it through the registry in the background) and for one start.
const (
	starterReadyWait = 5 * time.Minute
	starterStartWait = 2 * time.Minute
)

// starter times what a new user waits for: a create of a js session on the
// pooled daemon, `npm start` in the background as the seed page's Run does,
// and the starter's "/" answering 200 through the path-form preview. Its
// baseline is `npm start` of the same starter project on the host, its
// dependencies installed once beforehand (untimed), until "/" answers on a
// loopback port. The rounds interleave; one untimed round of each warms up.
func (b *bench) starter(ctx context.Context) ([]result, error) {
	dir, err := hostStarter(ctx)
	if err != nil {
		return nil, fmt.Errorf("starter on the host: %w", err)
	}
	defer os.RemoveAll(dir)
	if err := b.waitStarterDeps(ctx); err != nil {
		return nil, err
	}
	var host, session []time.Duration
	for i := -1; i < b.n; i++ {
		h, err := b.hostStart(ctx, dir)
		if err != nil {
			return nil, fmt.Errorf("npm start on the host: %w", err)
		}
		s, err := b.sessionStart(ctx, fmt.Sprintf("starter-%d", i+1))
		if err != nil {
			return nil, fmt.Errorf("starter through the preview: %w", err)
		}
		if i >= 0 {
			host, session = append(host, h), append(session, s)
		}
	}
	return []result{
		stats("`npm start` of the starter (host)", host, nil, ""),
		stats("create → starter answering via the preview", session, host, "npm start (host)"),
	}, nil
}

// hostStarter writes the js starter project into a new folder and installs
// its dependencies with the host's npm (its own registry configuration).
func hostStarter(ctx context.Context) (string, error) {
	files, err := templates.Files("js")
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "servcraft-bench-starter")
	if err != nil {
		return "", err
	}
	for _, f := range files {
		p := filepath.Join(dir, filepath.FromSlash(f.Path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			os.RemoveAll(dir)
			return "", err
		}
		if err := os.WriteFile(p, f.Data, 0o644); err != nil {
			os.RemoveAll(dir)
			return "", err
		}
	}
	install := exec.CommandContext(ctx, "npm", "install", "--no-audit", "--no-fund")
	install.Dir = dir
	if out, err := install.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("npm install: %w: %s", err, out)
	}
	return dir, nil
}

// hostStart times `npm start` in dir until its "/" answers 200 on a free
// loopback port, then kills its process group and waits for it.
func (b *bench) hostStart(ctx context.Context, dir string) (time.Duration, error) {
	port, err := freeLoopbackPort()
	if err != nil {
		return 0, err
	}
	cmd := exec.Command("npm", "start")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PORT="+strconv.Itoa(port))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	exited := make(chan error, 1)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}()
	url := "http://127.0.0.1:" + strconv.Itoa(port) + "/"
	for {
		if ok, err := b.answers(ctx, url); err != nil {
			return 0, err
		} else if ok {
			return time.Since(start), nil
		}
		select {
		case err := <-exited:
			exited <- err // for the deferred wait
			return 0, fmt.Errorf("npm start exited before answering: %v", err)
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(starterPoll):
		}
		if time.Since(start) > starterStartWait {
			return 0, fmt.Errorf("%s did not answer within %v", url, starterStartWait)
		}
	}
}

// sessionStart times create → background `npm start` → the preview's "/"
// answering 200 on the pooled daemon, then destroys the session untimed.
func (b *bench) sessionStart(ctx context.Context, name string) (time.Duration, error) {
	id := b.prefix + "-" + name
	start := time.Now()
	if _, err := b.create(ctx, b.url, name); err != nil {
		return 0, err
	}
	if _, err := b.call(ctx, b.url, "POST", "/api/playground/shell", map[string]any{"sessionId": id,
		"command": "npm start", "background": true}, 200); err != nil {
		return 0, err
	}
	url := b.url + "/p/" + id + "/"
	for {
		if ok, err := b.answers(ctx, url); err != nil {
			return 0, err
		} else if ok {
			break
		}
		if time.Since(start) > starterStartWait {
			return 0, fmt.Errorf("%s did not answer within %v", url, starterStartWait)
		}
		time.Sleep(starterPoll) // the starter is still starting: poll, as the page does
	}
	d := time.Since(start)
	return d, b.destroy(ctx, b.url, id)
}

// answers reports whether GET url answers 200 (false while nothing listens:
// a refused connection on the host, a 503 from the preview).
func (b *bench) answers(ctx context.Context, url string) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return false, err
	}
	resp, err := b.client.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return false, nil
		}
		return false, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return true, nil
	case http.StatusServiceUnavailable, http.StatusBadGateway:
		return false, nil
	}
	return false, fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
}

// waitStarterDeps waits until a js session on the pooled daemon comes with
// its starter's dependencies: a first run builds that layer in the
// background after the daemon starts.
func (b *bench) waitStarterDeps(ctx context.Context) error {
	deadline := time.Now().Add(starterReadyWait)
	for i := 0; ; i++ {
		var created struct {
			DependenciesReady bool   `json:"dependenciesReady"`
			Notice            string `json:"notice"`
		}
		name := fmt.Sprintf("starter-wait-%d", i)
		id := b.prefix + "-" + name
		if err := b.createJSON(ctx, name, &created); err != nil {
			return err
		}
		if err := b.destroy(ctx, b.url, id); err != nil {
			return err
		}
		if created.DependenciesReady {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("starter dependencies not ready after %v: %s", starterReadyWait, created.Notice)
		}
		time.Sleep(2 * time.Second) // the layer is being built; not timed
	}
}

// createJSON makes js session prefix-name on the pooled daemon, remembers
// it for destroy, and decodes the create's answer into out.
func (b *bench) createJSON(ctx context.Context, name string, out any) error {
	id := b.prefix + "-" + name
	if err := b.postJSON(ctx, b.url, "/api/playground/container", map[string]any{"sessionId": id, "projectType": "js"}, http.StatusCreated, out); err != nil {
		return fmt.Errorf("create %s: %w", id, err)
	}
	b.created = append(b.created, [2]string{b.url, id})
	return nil
}

// destroy deletes a session made by create and forgets it.
func (b *bench) destroy(ctx context.Context, base, id string) error {
	if _, err := b.call(ctx, base, "DELETE", "/api/playground/container?sessionId="+id, nil, 200); err != nil {
		return err
	}
	for i, c := range b.created {
		if c == [2]string{base, id} {
			b.created = append(b.created[:i], b.created[i+1:]...)
			break
		}
	}
	return nil
}

// freeLoopbackPort is a TCP port on 127.0.0.1 nothing listens on now.
func freeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
