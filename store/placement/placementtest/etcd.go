// Package placementtest starts a real etcd (Debian's etcd-server) for tests:
// loopback ports, data in the test's temporary folder, stopped at cleanup.
package placementtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Unavailable fails the test under CI (where everything must be there) and skips it elsewhere.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("integration test cannot run in CI: "+format, args...)
	}
	t.Skipf("skipping integration test: "+format, args...)
}

// FreePort returns a loopback TCP port nothing listens on now.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// StartEtcd runs etcd on two free loopback ports and returns its client URL
// once it answers.
func StartEtcd(t testing.TB) string {
	t.Helper()
	return startEtcd(t, "http", nil, "")
}

// TLS is what a client of StartEtcdTLS's etcd needs.
type TLS struct {
	CAFile, CertFile, KeyFile string      // PEM files: the CA, a client certificate and its key
	Config                    *tls.Config // the same, loaded
}

// StartEtcdTLS runs etcd with TLS on its client port, accepting only
// clients with a certificate of its CA (--client-cert-auth), and returns
// its client URL and what a client needs. Its health is answered on a
// plain metrics port.
func StartEtcdTLS(t testing.TB) (string, TLS) {
	t.Helper()
	dir := t.TempDir()
	ca, caKey := newCert(t, "servcraft-test-ca", nil, nil, dir, "ca")
	newCert(t, "etcd", ca, caKey, dir, "server")
	newCert(t, "servcraftd", ca, caKey, dir, "client")
	c := TLS{CAFile: filepath.Join(dir, "ca.crt"), CertFile: filepath.Join(dir, "client.crt"), KeyFile: filepath.Join(dir, "client.key")}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	pair, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	c.Config = &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	metrics := fmt.Sprintf("http://127.0.0.1:%d", FreePort(t))
	url := startEtcd(t, "https", []string{"--cert-file", filepath.Join(dir, "server.crt"), "--key-file", filepath.Join(dir, "server.key"),
		"--trusted-ca-file", c.CAFile, "--client-cert-auth", "--listen-metrics-urls", metrics}, metrics+"/health")
	return url, c
}

// newCert makes a certificate for 127.0.0.1 named cn, signed by parent (nil:
// self-signed, a CA), and writes it and its key as dir/<name>.crt and .key.
func newCert(t testing.TB, cn string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, dir, name string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"localhost"},
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	signer, signerKey := tmpl, key
	if parent == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	} else {
		signer, signerKey = parent, parentKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for file, block := range map[string]*pem.Block{name + ".crt": {Type: "CERTIFICATE", Bytes: der}, name + ".key": {Type: "EC PRIVATE KEY", Bytes: keyDER}} {
		if err := os.WriteFile(filepath.Join(dir, file), pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return cert, key
}

// startEtcd runs etcd with its client port on scheme and extra flags, and
// waits until health answers ("": the client URL's /health).
func startEtcd(t testing.TB, scheme string, extra []string, health string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: skipped in -short mode")
	}
	bin, err := exec.LookPath("etcd")
	if err != nil {
		Unavailable(t, "etcd not installed (scripts/deps-cluster.sh installs Debian's etcd-server)")
	}
	dir := t.TempDir()
	client := fmt.Sprintf("%s://127.0.0.1:%d", scheme, FreePort(t))
	peer := fmt.Sprintf("http://127.0.0.1:%d", FreePort(t))
	cmd := exec.Command(bin, append([]string{"--name", "test", "--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "test=" + peer, "--initial-cluster-state", "new"}, extra...)...)
	log, err := os.Create(filepath.Join(dir, "etcd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		log.Close()
	})
	if health == "" {
		health = client + "/health"
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(health)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return client
			}
			err = fmt.Errorf("health: %s", resp.Status)
		}
		select {
		case werr := <-exited:
			data, _ := os.ReadFile(log.Name())
			t.Fatalf("etcd exited: %v\n%s", werr, data)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd at %s not answering: %v", client, err)
		}
		time.Sleep(50 * time.Millisecond) // polling etcd's start
	}
}
