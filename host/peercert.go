package host

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/cofferhsm/coffer/host/state"
	"github.com/cofferhsm/coffer/internal/atomicfile"
)

// The realm's peer CA and its hosts' certificates (`cofferd peer ca`,
// `cofferd peer cert`): ECDSA P-256, made with crypto/x509 so that no
// openssl is needed. The CA's key issues host certificates and nothing
// else: keep it off the hosts.

const (
	peerCAValidity   = 10 * 365 * 24 * time.Hour
	peerCertValidity = 5 * 365 * 24 * time.Hour
)

func serialNumber() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

// newPeerCA makes a peer CA named name.
func newPeerCA(name string, now time.Time) (*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	sn, err := serialNumber()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(peerCAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

// issuePeerCert issues host's certificate: its name as common name and as
// its one DNS name, for both ends of a peer connection.
func issuePeerCert(ca *x509.Certificate, caKey crypto.Signer, host string, now time.Time) (tls.Certificate, error) {
	if err := state.CheckHostName(host); err != nil {
		return tls.Certificate{}, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	sn, err := serialNumber()
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: host},
		DNSNames:     []string{host},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(peerCertValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

func keyPEM(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// PeerCAFiles are the CA's files in its folder.
const (
	PeerCACert = "ca.crt"
	PeerCAKey  = "ca.key"
)

// WritePeerCA makes a realm's peer CA in dir (created 0700): ca.crt and
// ca.key (0600). It refuses to overwrite a CA.
func WritePeerCA(dir string, now time.Time) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	cert, key, err := newPeerCA("coffer realm peer CA", now)
	if err != nil {
		return err
	}
	kp, err := keyPEM(key)
	if err != nil {
		return err
	}
	if err := atomicfile.Create(filepath.Join(dir, PeerCAKey), kp, 0o600); err != nil {
		return err
	}
	return atomicfile.Create(filepath.Join(dir, PeerCACert), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o644)
}

// WritePeerCert issues host's certificate from the CA in caDir into outDir
// (created 0700): HOST.crt, HOST.key (0600) and a copy of ca.crt, the three
// files of -peer-cert, -peer-key and -peer-ca. It returns their paths.
func WritePeerCert(caDir, host, outDir string, now time.Time) (certFile, keyFile, caFile string, err error) {
	caPair, err := tls.LoadX509KeyPair(filepath.Join(caDir, PeerCACert), filepath.Join(caDir, PeerCAKey))
	if err != nil {
		return "", "", "", fmt.Errorf("peer CA in %s: %w", caDir, err)
	}
	ca, err := x509.ParseCertificate(caPair.Certificate[0])
	if err != nil {
		return "", "", "", err
	}
	caKey, ok := caPair.PrivateKey.(crypto.Signer)
	if !ok || !ca.IsCA {
		return "", "", "", errors.New("peer CA: not a CA certificate and key")
	}
	c, err := issuePeerCert(ca, caKey, host, now)
	if err != nil {
		return "", "", "", err
	}
	kp, err := keyPEM(c.PrivateKey.(crypto.Signer))
	if err != nil {
		return "", "", "", err
	}
	if err := os.MkdirAll(outDir, 0o700); err != nil {
		return "", "", "", err
	}
	certFile, keyFile, caFile = filepath.Join(outDir, host+".crt"), filepath.Join(outDir, host+".key"), filepath.Join(outDir, PeerCACert)
	if err := atomicfile.Create(keyFile, kp, 0o600); err != nil {
		return "", "", "", err
	}
	if err := atomicfile.Create(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}), 0o644); err != nil {
		return "", "", "", err
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw})
	if old, err := os.ReadFile(caFile); err == nil && string(old) == string(caPEM) {
		return certFile, keyFile, caFile, nil
	}
	return certFile, keyFile, caFile, atomicfile.Create(caFile, caPEM, 0o644)
}
