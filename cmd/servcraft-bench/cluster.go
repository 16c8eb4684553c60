package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// clusterSpacing is the untimed pause before each timed call of clusterHop:
// the session's next pre-started runner is up by then, so both rows time a
// warm execute and their difference is the hop, not a Node start-up.
const clusterSpacing = 500 * time.Millisecond

// clusterMinRounds keeps the ratio of two medians from resting on 5 calls a
// side in a --quick run (20 calls, about 15 s).
const clusterMinRounds = 10

// clusterHop times execute of hello.js sent to a session's owner and the same
// execute sent to another node of the cluster, which forwards it (one signed
// hop), alternately in the same process, so drift hits both alike.
func (b *bench) clusterHop(ctx context.Context) (_ []result, err error) {
	id := b.prefix + "-cluster"
	hdr, err := b.clusterCall(ctx, b.clusterOwnerURL, "POST", "/api/playground/container",
		map[string]any{"sessionId": id, "projectType": "js"}, http.StatusCreated)
	if err != nil {
		return nil, fmt.Errorf("cluster: create on the owner: %w", err)
	}
	defer func() {
		_, derr := b.clusterCall(context.WithoutCancel(ctx), b.clusterOwnerURL, "DELETE",
			"/api/playground/container?sessionId="+id, nil, http.StatusOK)
		if derr != nil && err == nil {
			err = fmt.Errorf("cluster: destroy: %w", derr)
		}
	}()
	owner := hdr.Get("X-Servcraft-Node")
	if owner == "" {
		return nil, fmt.Errorf("cluster: %s did not name the owner (X-Servcraft-Node): is it in cluster mode?", b.clusterOwnerURL)
	}
	execute := map[string]any{"sessionId": id, "code": hello}
	// timeExecute times one call; through the peer it must have been
	// forwarded to the owner, and on the owner served there, or the row
	// measures something else.
	timeExecute := func(viaPeer bool) (time.Duration, error) {
		base := b.clusterOwnerURL
		if viaPeer {
			base = b.clusterPeerURL
		}
		start := time.Now()
		hdr, err := b.clusterCall(ctx, base, "POST", "/api/playground/execute", execute, http.StatusOK)
		d := time.Since(start)
		if err != nil {
			return 0, fmt.Errorf("cluster: execute via %s: %w", base, err)
		}
		if to := hdr.Get("X-Servcraft-Forwarded-To"); viaPeer && to != owner {
			return 0, fmt.Errorf("cluster: execute via %s was forwarded to %q, want the owner %q", base, to, owner)
		} else if !viaPeer && to != "" {
			return 0, fmt.Errorf("cluster: execute on the owner %s was forwarded to %q", base, to)
		}
		return d, nil
	}
	// One untimed call each: the session's first runner, the hop's connection.
	for _, viaPeer := range []bool{false, true} {
		if _, err := timeExecute(viaPeer); err != nil {
			return nil, err
		}
	}
	// Pairs in alternating order (owner first, then the peer first), so
	// neither side always follows the other.
	var direct, hop []time.Duration
	for i := range max(b.n, clusterMinRounds) {
		for _, viaPeer := range []bool{i%2 == 1, i%2 == 0} {
			time.Sleep(clusterSpacing) // not timed
			d, err := timeExecute(viaPeer)
			if err != nil {
				return nil, err
			}
			if viaPeer {
				hop = append(hop, d)
			} else {
				direct = append(direct, d)
			}
		}
	}
	return []result{
		stats("execute hello.js on the owner", direct, nil, ""),
		stats("execute hello.js via a non-owner node (one hop)", hop, direct, "execute on the owner"),
	}, nil
}

// clusterCall makes one API request, checks its status and returns the
// answer's headers.
func (b *bench) clusterCall(ctx context.Context, base, method, path string, body any, want int) (http.Header, error) {
	var r io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		r = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, r)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := b.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != want {
		return nil, fmt.Errorf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, want, data)
	}
	return resp.Header, nil
}
