package placement

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Records in etcd are trusted only when signed: whoever can write to etcd
// without the cluster secret can neither add a node others forward to, nor
// make a node give up a session. A node record carries an HMAC-SHA256 of its
// fields under the secret (Node.Sig); a session's owner record is the owner's
// id, when it claimed the session and an HMAC over both and the session's id
// (so it cannot be moved to another session). A record whose signature does
// not verify is treated as absent, and logged.

// errUnsigned is the cause of a record whose signature does not verify.
var errUnsigned = errors.New("record not signed with the cluster secret")

// nodeMAC is the signature of n's fields but Sig.
func nodeMAC(secret []byte, n Node) string {
	n.Sig = ""
	data, _ := json.Marshal(n) // a struct of plain fields: it always encodes
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("servcraft-node-v1\n"))
	m.Write(data)
	return hex.EncodeToString(m.Sum(nil))
}

// signNode returns n signed with secret.
func signNode(secret []byte, n Node) Node {
	n.Sig = nodeMAC(secret, n)
	return n
}

// decodeNode reads a node record and checks its signature.
func decodeNode(secret []byte, data []byte) (Node, error) {
	var n Node
	if err := json.Unmarshal(data, &n); err != nil {
		return Node{}, fmt.Errorf("decode node record: %w", err)
	}
	if !hmac.Equal([]byte(n.Sig), []byte(nodeMAC(secret, n))) {
		return Node{}, fmt.Errorf("node record %q: %w", n.ID, errUnsigned)
	}
	return n, nil
}

// ownerRecord is the value of a session's owner record.
type ownerRecord struct {
	Node string    `json:"node"` // the owner's id
	At   time.Time `json:"at"`   // when it claimed the session
	Sig  string    `json:"sig"`
}

func ownerMAC(secret []byte, sessionID string, r ownerRecord) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("servcraft-owner-v1\n" + sessionID + "\n" + r.Node + "\n" + strconv.FormatInt(r.At.UnixNano(), 10)))
	return hex.EncodeToString(m.Sum(nil))
}

// encodeOwner is the signed owner record of sessionID naming node, claimed at.
func encodeOwner(secret []byte, sessionID, node string, at time.Time) string {
	r := ownerRecord{Node: node, At: at.UTC()}
	r.Sig = ownerMAC(secret, sessionID, r)
	data, _ := json.Marshal(r)
	return string(data)
}

// decodeOwner reads sessionID's owner record and checks its signature.
func decodeOwner(secret []byte, sessionID string, data []byte) (ownerRecord, error) {
	var r ownerRecord
	if err := json.Unmarshal(data, &r); err != nil {
		return ownerRecord{}, fmt.Errorf("owner record of %s: %w", sessionID, errUnsigned)
	}
	if r.Node == "" || !hmac.Equal([]byte(r.Sig), []byte(ownerMAC(secret, sessionID, r))) {
		return ownerRecord{}, fmt.Errorf("owner record of %s: %w", sessionID, errUnsigned)
	}
	return r, nil
}
