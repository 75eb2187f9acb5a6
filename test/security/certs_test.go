package security

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// pki is the certificates one test run generates (never committed): a CA,
// a server certificate for 127.0.0.1/localhost (the broker's and the
// registry's) and a client certificate for mTLS, as PEM files in dir.
type pki struct {
	dir string
	// CA, server and client files
	caFile, brokerFile, serverCert, serverKey, clientCert, clientKey string
	// otherCA is a second CA that signed nothing the servers use: a client
	// trusting only it must fail verification.
	otherCAFile string
}

func newPKI(dir string) (*pki, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	p := &pki{
		dir:         dir,
		caFile:      filepath.Join(dir, "ca.pem"),
		brokerFile:  filepath.Join(dir, "broker.pem"),
		serverCert:  filepath.Join(dir, "server.crt"),
		serverKey:   filepath.Join(dir, "server.key"),
		clientCert:  filepath.Join(dir, "client.crt"),
		clientKey:   filepath.Join(dir, "client.key"),
		otherCAFile: filepath.Join(dir, "other-ca.pem"),
	}
	caKey, caCert, caDER, err := newCA("ordo test CA")
	if err != nil {
		return nil, err
	}
	_, _, otherDER, err := newCA("ordo unrelated CA")
	if err != nil {
		return nil, err
	}
	srvKey, srvDER, err := newLeaf(caKey, caCert, "127.0.0.1", true)
	if err != nil {
		return nil, err
	}
	cliKey, cliDER, err := newLeaf(caKey, caCert, "ordo-client", false)
	if err != nil {
		return nil, err
	}
	srvKeyPEM, err := keyPEM(srvKey)
	if err != nil {
		return nil, err
	}
	cliKeyPEM, err := keyPEM(cliKey)
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{
		p.caFile:      certPEM(caDER),
		p.otherCAFile: certPEM(otherDER),
		// Kafka's PEM key store: the unencrypted PKCS#8 key, then the chain
		p.brokerFile: concat(srvKeyPEM, certPEM(srvDER), certPEM(caDER)),
		p.serverCert: concat(certPEM(srvDER), certPEM(caDER)),
		p.serverKey:  srvKeyPEM,
		p.clientCert: certPEM(cliDER),
		p.clientKey:  cliKeyPEM,
	}
	for f, b := range files {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func newCA(cn string) (*ecdsa.PrivateKey, *x509.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("create CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	return key, cert, der, err
}

// newLeaf signs a server (SAN 127.0.0.1, localhost) or client certificate.
func newLeaf(caKey *ecdsa.PrivateKey, ca *x509.Certificate, cn string, server bool) (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("sign %s: %w", cn, err)
	}
	return key, der, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	return n
}

func certPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func keyPEM(k *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func concat(bs ...[]byte) []byte {
	var out []byte
	for _, b := range bs {
		out = append(out, b...)
	}
	return out
}
