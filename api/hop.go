package api

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// hopHeader marks a request one node forwarded to the session's owner. Its
// value is "v1;<from node>;<unix seconds>;<client address>;<hex HMAC-SHA256>"
// keyed with the cluster secret over the other fields, the method and the
// request URI: an outside client without the secret cannot make one, a node
// never forwards a request that carries one (at most one hop, no loop), and
// the owner takes the client address from it for its per-client limits.
const hopHeader = "X-Servcraft-Hop"

// errForgedHop is the cause of a 403 for a hop header that does not verify.
var errForgedHop = errors.New("forwarded-request header does not verify")

// signHop makes the hop header's value.
func signHop(secret []byte, from, client, method, requestURI string, now time.Time) string {
	ts := strconv.FormatInt(now.Unix(), 10)
	return "v1;" + from + ";" + ts + ";" + client + ";" + hex.EncodeToString(hopMAC(secret, from, ts, client, method, requestURI))
}

func hopMAC(secret []byte, from, ts, client, method, requestURI string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("v1\n" + from + "\n" + ts + "\n" + client + "\n" + method + "\n" + requestURI))
	return m.Sum(nil)
}

// verifyHop checks a hop header's value for this method and URI, no older or
// newer than skew, and returns the forwarding node and the client address.
func verifyHop(secret []byte, value, method, requestURI string, now time.Time, skew time.Duration) (from, client string, err error) {
	if len(secret) == 0 {
		return "", "", fmt.Errorf("%w: this node has no cluster secret", errForgedHop)
	}
	parts := strings.Split(value, ";")
	if len(parts) != 5 || parts[0] != "v1" {
		return "", "", fmt.Errorf("%w: malformed", errForgedHop)
	}
	from, ts, client, sig := parts[1], parts[2], parts[3], parts[4]
	got, err := hex.DecodeString(sig)
	if err != nil || !hmac.Equal(got, hopMAC(secret, from, ts, client, method, requestURI)) {
		return "", "", fmt.Errorf("%w: bad signature", errForgedHop)
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return "", "", fmt.Errorf("%w: bad time", errForgedHop)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > skew || d < -skew {
		return "", "", fmt.Errorf("%w: signed %s ago, more than %s", errForgedHop, d.Round(time.Second), skew)
	}
	if net.ParseIP(client) == nil {
		return "", "", fmt.Errorf("%w: bad client address", errForgedHop)
	}
	return from, client, nil
}
