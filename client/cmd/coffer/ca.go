package main

// A private CA for TLS to cofferd: the configuration's `ca` names a file of
// PEM certificates trusted besides the system's roots.

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/cofferhsm/coffer/client"
)

// caPool reads the certificates of a CA file, added to the system's roots.
func caPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate", client.QuoteName(path))
	}
	return pool, nil
}

// absCA checks a CA file given on the command line and returns its absolute
// path, for the configuration.
func absCA(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	if _, err := caPool(abs); err != nil {
		return "", err
	}
	return abs, nil
}

// useCA makes every connection of this run to cofferd trust the CA file
// path too ("": the system's roots only). A client a test set is left
// alone. A file that cannot be read fails every connection, saying why,
// and nothing else: a backup needs no connection.
func (c *cli) useCA(path string) {
	if c.httpClient != nil && !c.caClient {
		return
	}
	c.httpClient, c.caClient = nil, false
	if path == "" {
		return
	}
	pool, err := caPool(path)
	var rt http.RoundTripper
	if err != nil {
		rt = failingTransport{err}
	} else {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		rt = t
	}
	c.httpClient, c.caClient = &http.Client{Timeout: 60 * time.Second, Transport: rt}, true
}

// failingTransport fails every request with err.
type failingTransport struct{ err error }

func (f failingTransport) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, fmt.Errorf("%w (the configuration's ca; coffer config set ca FILE|none)", f.err)
}
