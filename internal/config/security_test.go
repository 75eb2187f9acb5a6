package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// writeFiles writes name → content into a new dir and returns it.
func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// selfSigned returns a PEM certificate and its PKCS#8 key.
func selfSigned(t *testing.T) (certPEM, keyPEM string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "t"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}))
}

func TestKafkaTLSBoolOrMapping(t *testing.T) {
	cert, key := selfSigned(t)
	dir := writeFiles(t, map[string]string{"ca.pem": cert, "client.crt": cert, "client.key": key})
	path := filepath.Join(dir, "ordo.yaml")
	cases := []struct {
		yaml    string
		env     []string
		enabled bool
		certs   bool
	}{
		{"", nil, false, false},
		{"  tls: true\n", nil, true, false},
		{"  tls: false\n", nil, false, false},
		{"  tls: {ca_file: ca.pem}\n", nil, true, false}, // a mapping turns TLS on
		{"  tls:\n    ca_file: ca.pem\n    cert_file: client.crt\n    key_file: client.key\n    server_name: kafka.internal\n", nil, true, true},
		{"  tls: {enabled: false}\n", nil, false, false},
		{"", []string{"ORDO_KAFKA_TLS_ENABLED=true", "ORDO_KAFKA_TLS_CA_FILE=ca.pem"}, true, false},
		{"", []string{"ORDO_KAFKA_TLS=true"}, true, false}, // the historical bool variable
	}
	for _, c := range cases {
		cfg, err := Parse(path, []byte("kafka:\n  brokers: [b:9093]\n"+c.yaml+"inputs: [in]\npipeline: [{type: orchestrate}]\n"), c.env)
		if err != nil {
			t.Fatalf("%q: %v", c.yaml, err)
		}
		if cfg.Kafka.TLS.Enabled != c.enabled {
			t.Errorf("%q %v: enabled = %v", c.yaml, c.env, cfg.Kafka.TLS.Enabled)
		}
		tc, err := cfg.KafkaTLS()
		if err != nil {
			t.Fatalf("%q: KafkaTLS: %v", c.yaml, err)
		}
		if (tc != nil) != c.enabled {
			t.Errorf("%q: tls.Config %v, want enabled %v", c.yaml, tc, c.enabled)
		}
		if tc != nil && (len(tc.Certificates) == 1) != c.certs {
			t.Errorf("%q: %d client certificates", c.yaml, len(tc.Certificates))
		}
		if tc != nil && strings.Contains(c.yaml, "ca_file") && tc.RootCAs == nil {
			t.Errorf("%q: ca_file did not set RootCAs", c.yaml)
		}
		if strings.Contains(c.yaml, "server_name") && tc.ServerName != "kafka.internal" {
			t.Errorf("server_name not applied: %q", tc.ServerName)
		}
	}
}

func TestSecurityErrorsNameKeyAndFix(t *testing.T) {
	cert, key := selfSigned(t)
	dir := writeFiles(t, map[string]string{"ca.pem": cert, "key.pem": key, "junk.pem": "hello\n", "empty": "\n", "pw": "s3cret\n"})
	path := filepath.Join(dir, "ordo.yaml")
	head := "inputs: [in]\npipeline: [{type: orchestrate}]\n"
	cases := []struct {
		name, yaml string
		env        []string
		line       int
		key, msg   string
	}{
		{"unknown tls key", "kafka:\n  tls:\n    ca_fle: ca.pem\n", nil, 3, "kafka.tls.ca_fle", "unknown key (use one of: enabled, ca_file,"},
		{"tls neither bool nor map", "kafka:\n  tls: maybe\n", nil, 2, "kafka.tls", "neither true/false nor a mapping"},
		{"missing CA file", "kafka:\n  tls: {ca_file: nope.pem}\n", nil, 2, "kafka.tls.ca_file", "nope.pem"},
		{"CA not PEM", "kafka:\n  tls: {ca_file: junk.pem}\n", nil, 2, "kafka.tls.ca_file", "no PEM certificate"},
		{"cert without key", "kafka:\n  tls: {cert_file: ca.pem}\n", nil, 2, "kafka.tls.key_file", "cert_file without key_file"},
		{"key does not match", "kafka:\n  tls: {cert_file: junk.pem, key_file: key.pem}\n", nil, 2, "kafka.tls.cert_file", "client certificate"},
		{"settings with TLS off", "kafka:\n  tls: {enabled: false, ca_file: ca.pem}\n", nil, 2, "kafka.tls", "TLS is off"},
		{"mechanism without password", "kafka:\n  sasl: {mechanism: SCRAM-SHA-512, username: u}\n", nil, 2, "kafka.sasl.password", "ORDO_KAFKA_SASL_PASSWORD"},
		{"mechanism without user", "kafka:\n  sasl: {mechanism: PLAIN, password: x}\n", nil, 2, "kafka.sasl.username", "empty"},
		{"password and file", "kafka:\n  sasl: {mechanism: PLAIN, username: u, password: x, password_file: pw}\n", nil, 2, "kafka.sasl.password", "both"},
		{"missing password file", "kafka:\n  sasl: {mechanism: PLAIN, username: u, password_file: nope}\n", nil, 2, "kafka.sasl.password_file", "nope"},
		{"empty password file", "kafka:\n  sasl: {mechanism: PLAIN, username: u, password_file: empty}\n", nil, 2, "kafka.sasl.password_file", "is empty"},
		{"credentials without mechanism", "kafka:\n  sasl: {username: u, password: x}\n", nil, 2, "kafka.sasl.mechanism", "no mechanism"},
		{"unknown mechanism", "kafka:\n  sasl: {mechanism: GSSAPI}\n", nil, 2, "kafka.sasl.mechanism", "OAUTHBEARER"},
		{"oauth without token", "kafka:\n  sasl: {mechanism: OAUTHBEARER}\n", nil, 2, "kafka.sasl.token", "token_file"},
		{"oauth with password", "kafka:\n  sasl: {mechanism: OAUTHBEARER, token: t, password: x}\n", nil, 2, "kafka.sasl.password", "not a password"},
		{"token with scram", "kafka:\n  sasl: {mechanism: SCRAM-SHA-256, username: u, password: x, token: t}\n", nil, 2, "kafka.sasl.token", "OAUTHBEARER"},
		{"userinfo and basic_auth", "registry:\n  url: http://a:b@r:8081\n  basic_auth: {username: a, password: b}\n", nil, 2, "registry.url", "both in the URL"},
		{"basic_auth without password", "registry:\n  basic_auth: {username: a}\n", nil, 2, "registry.basic_auth.password", "password_file"},
		{"bearer and basic", "registry:\n  bearer_token: t\n  basic_auth: {username: a, password: b}\n", nil, 2, "registry.bearer_token", "one Authorization header"},
		{"tls on http registry", "registry:\n  tls: {ca_file: ca.pem}\n", nil, 2, "registry.tls", "http://"},
		{"registry unknown key", "registry:\n  basic_auth: {usrname: a}\n", nil, 2, "registry.basic_auth.usrname", `did you mean "username"`},
		{"bad registry URL from env", "", []string{"ORDO_REGISTRY_URL=ftp://u:SECRETPW@r"}, 0, "registry.url", "not an http(s) URL"},
		{"unescaped slash in URL password", "registry:\n  url: https://u:SECRET/PW@r:8081\n", nil, 2, "registry.url", "not an http(s) URL"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse(path, []byte(c.yaml+head), c.env)
			if err == nil {
				t.Fatal("accepted")
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("%T %v is not a config error", err, err)
			}
			s := err.Error()
			want := []string{c.key, c.msg}
			if c.line > 0 {
				want = append(want, "ordo.yaml:"+strconv.Itoa(c.line)+":")
			}
			for _, w := range want {
				if !strings.Contains(s, w) {
					t.Errorf("%q lacks %q", s, w)
				}
			}
			if strings.Contains(s, "SECRET") || strings.Contains(s, "s3cret") {
				t.Errorf("%q prints a secret", s)
			}
		})
	}
}

func TestSecretsFromFilesAndEnv(t *testing.T) {
	dir := writeFiles(t, map[string]string{"kafka.pw": "kafka-secret\n", "reg.pw": "reg-secret\r\n", "token": "tok-1\n"})
	path := filepath.Join(dir, "ordo.yaml")
	y := `kafka:
  sasl: {mechanism: SCRAM-SHA-512, username: ordo, password_file: kafka.pw}
registry:
  url: https://r:8081
  basic_auth: {username: ordo-reg, password_file: reg.pw}
inputs: [in]
pipeline: [{type: orchestrate}]
`
	cfg, err := Parse(path, []byte(y), nil)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := cfg.SASLPassword(); err != nil || p != "kafka-secret" {
		t.Fatalf("SASLPassword = %q, %v", p, err)
	}
	rc, err := cfg.RegistryCreds()
	if err != nil || rc.Username != "ordo-reg" || rc.Password != "reg-secret" || rc.URL != "https://r:8081" {
		t.Fatalf("RegistryCreds = %+v, %v", rc, err)
	}

	// Env overrides: the password itself, and OAUTHBEARER with a token file
	// that is re-read on every call (a rotated token is picked up).
	cfg, err = Parse(path, []byte("inputs: [in]\npipeline: [{type: orchestrate}]\n"), []string{
		"ORDO_KAFKA_SASL_MECHANISM=OAUTHBEARER", "ORDO_KAFKA_SASL_TOKEN_FILE=token",
		"ORDO_REGISTRY_URL=http://user:p%40ss@r:8081", "ORDO_REGISTRY_BEARER_TOKEN=",
	})
	if err != nil {
		t.Fatal(err)
	}
	if tok, _ := cfg.SASLToken(); tok != "tok-1" {
		t.Fatalf("token %q", tok)
	}
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte("tok-2"), 0o600); err != nil {
		t.Fatal(err)
	}
	if tok, _ := cfg.SASLToken(); tok != "tok-2" {
		t.Fatalf("the token file was not re-read: %q", tok)
	}
	rc, err = cfg.RegistryCreds()
	if err != nil || rc.URL != "http://r:8081" || rc.Username != "user" || rc.Password != "p@ss" {
		t.Fatalf("userinfo not moved to basic auth: %+v %v", rc, err)
	}
}

func TestRedaction(t *testing.T) {
	dir := writeFiles(t, map[string]string{"token": "file-token-77\n"})
	y := `kafka:
  sasl: {mechanism: OAUTHBEARER, token_file: token, extensions: {logicalCluster: ext-secret}}
registry:
  url: https://reg:p%3Ass%2Fw0rd@r:8081
inputs: [in]
pipeline:
  - type: enrich_http
    config: {headers: {Authorization: "Bearer file-token-77"}}
`
	cfg, err := Parse(filepath.Join(dir, "ordo.yaml"), []byte(y), nil)
	if err != nil {
		t.Fatal(err)
	}
	secrets := cfg.Secrets()
	for _, want := range []string{"file-token-77", "ext-secret", "p:ss/w0rd"} {
		if !slices.Contains(secrets, want) {
			t.Errorf("Secrets() %q lacks %q", secrets, want)
		}
	}
	red := cfg.Redactor()
	in := `GET "https://reg:p%3Ass%2Fw0rd@r:8081/subjects": token file-token-77, ext ext-secret, p:ss/w0rd, other http://a:b@c/x`
	out := red.Redact(in)
	for _, leak := range []string{"file-token-77", "ext-secret", "p:ss/w0rd", "p%3Ass%2Fw0rd", "a:b@"} {
		if strings.Contains(out, leak) {
			t.Errorf("Redact left %q in %q", leak, out)
		}
	}
	if !strings.Contains(out, "https://reg:"+Redacted+"@r:8081/subjects") || !strings.Contains(out, "http://a:"+Redacted+"@c/x") {
		t.Errorf("URL userinfo not redacted in place: %q", out)
	}
	if got := RedactURL("http://u:pw@h:1/p"); got != "http://u:"+Redacted+"@h:1/p" {
		t.Errorf("RedactURL = %q", got)
	}
	if got := (Redactor{}).Redact("no secrets here"); got != "no secrets here" {
		t.Errorf("zero Redactor changed text: %q", got)
	}

	r := cfg.Redacted()
	if r.Kafka.SASL.Extensions["logicalCluster"] != Redacted || strings.Contains(r.Registry.URL, "w0rd") || r.Kafka.SASL.TokenFile != "token" {
		t.Errorf("Redacted() = %+v %q", r.Kafka.SASL, r.Registry.URL)
	}
	var node strings.Builder
	for _, c := range r.Pipeline[0].Config.Content {
		for _, cc := range c.Content {
			node.WriteString(cc.Value + " ")
		}
	}
	if strings.Contains(node.String(), "file-token-77") {
		t.Errorf("a secret stayed in the pipeline config: %s", node.String())
	}
	if cfg.Kafka.SASL.Extensions["logicalCluster"] != "ext-secret" || !strings.Contains(cfg.Registry.URL, "w0rd") {
		t.Error("Redacted() changed the original config")
	}
}
