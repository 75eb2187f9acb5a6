package config

// Connection security: kafka.tls, kafka.sasl, the registry's credentials
// and TLS, where secrets come from, their validation and redaction.

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// TLS is `kafka.tls`: `true`/`false` (the system roots), or a mapping.
// A mapping turns TLS on unless it says `enabled: false`.
type TLS struct {
	Enabled bool `yaml:"enabled"`
	// CAFile is a PEM bundle of the CAs that may sign the brokers'
	// certificates (default: the system roots).
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a PEM client certificate and its key (mTLS).
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName overrides the name the brokers' certificates are checked
	// against (default: the host dialed).
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify accepts any broker certificate. Tests only.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// RegistryTLS is `registry.tls`, used when registry.url is https://.
type RegistryTLS struct {
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	ServerName         string `yaml:"server_name"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// BasicAuth is `registry.basic_auth`.
type BasicAuth struct {
	Username     string `yaml:"username"`
	Password     string `yaml:"password"`
	PasswordFile string `yaml:"password_file"`
}

// UnmarshalYAML accepts a bool (the historical `tls: true`) or a mapping.
func (t *TLS) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		var on bool
		if err := n.Decode(&on); err != nil {
			return fmt.Errorf("line %d: kafka.tls: %q is neither true/false nor a mapping (write tls: true, or tls: {ca_file: ca.pem})", n.Line, n.Value)
		}
		*t = TLS{Enabled: on}
		return nil
	case yaml.MappingNode:
		// Node.Decode does not inherit the file's KnownFields: check keys here.
		known := tlsKeys()
		var unknown []string
		explicit := false
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Value == "enabled" {
				explicit = true
			}
			if !slices.Contains(known, k.Value) {
				unknown = append(unknown, fmt.Sprintf("line %d: kafka.tls.%s: unknown key (use one of: %s)", k.Line, k.Value, strings.Join(known, ", ")))
			}
		}
		if len(unknown) > 0 {
			return &yaml.TypeError{Errors: unknown}
		}
		type plain TLS
		var p plain
		if err := n.Decode(&p); err != nil {
			return err
		}
		*t = TLS(p)
		if !explicit {
			t.Enabled = true
		}
		return nil
	}
	return fmt.Errorf("line %d: kafka.tls: write true/false or a mapping", n.Line)
}

// tlsKeys are the keys of a kafka.tls mapping.
func tlsKeys() []string {
	var keys []string
	for f := range reflect.TypeFor[TLS]().Fields() {
		keys = append(keys, strings.Split(f.Tag.Get("yaml"), ",")[0])
	}
	return keys
}

// Path resolves a file named in the config against the config file's
// directory.
func (c *Config) Path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.BaseDir(), p)
}

// readSecret is value, or the content of file (trailing newline trimmed, as
// Kubernetes Secret files and `echo` leave one).
func (c *Config) readSecret(value, file string) (string, error) {
	if file == "" {
		return value, nil
	}
	b, err := os.ReadFile(c.Path(file))
	if err != nil {
		return "", err
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", fmt.Errorf("%s is empty", c.Path(file))
	}
	return s, nil
}

// SASLPassword is kafka.sasl.password or the content of password_file.
func (c *Config) SASLPassword() (string, error) {
	return c.readSecret(c.Kafka.SASL.Password, c.Kafka.SASL.PasswordFile)
}

// SASLToken is the OAUTHBEARER token: kafka.sasl.token, or token_file read
// now (call it for every authentication to follow a rotated file).
func (c *Config) SASLToken() (string, error) {
	return c.readSecret(c.Kafka.SASL.Token, c.Kafka.SASL.TokenFile)
}

// RegistryCreds is where and how to reach the schema registry: the URL
// without userinfo, and the basic-auth user/password (from basic_auth or
// the URL's userinfo) or bearer token, secrets read from their files.
type RegistryCreds struct {
	URL                string
	Username, Password string
	BearerToken        string
}

// RegistryCreds splits registry.url and resolves the registry's secrets.
func (c *Config) RegistryCreds() (RegistryCreds, error) {
	r := c.Registry
	u, err := url.Parse(r.URL)
	if err != nil {
		return RegistryCreds{}, fmt.Errorf("registry.url %s: not a URL", RedactURL(r.URL))
	}
	var out RegistryCreds
	if u.User != nil {
		out.Username = u.User.Username()
		out.Password, _ = u.User.Password()
		u.User = nil
	}
	out.URL = u.String()
	if r.BasicAuth.Username != "" {
		out.Username = r.BasicAuth.Username
		if out.Password, err = c.readSecret(r.BasicAuth.Password, r.BasicAuth.PasswordFile); err != nil {
			return RegistryCreds{}, fmt.Errorf("registry.basic_auth.password_file: %w", err)
		}
	}
	if out.BearerToken, err = c.readSecret(r.BearerToken, r.BearerTokenFile); err != nil {
		return RegistryCreds{}, fmt.Errorf("registry.bearer_token_file: %w", err)
	}
	return out, nil
}

// KafkaTLS is the tls.Config for the brokers, nil when kafka.tls is off.
func (c *Config) KafkaTLS() (*tls.Config, error) {
	t := c.Kafka.TLS
	if !t.Enabled {
		return nil, nil
	}
	return c.tlsConfig("kafka.tls", t.CAFile, t.CertFile, t.KeyFile, t.ServerName, t.InsecureSkipVerify)
}

// RegistryTLSConfig is the tls.Config for an https:// registry (nil: Go's
// defaults).
func (c *Config) RegistryTLSConfig() (*tls.Config, error) {
	t := c.Registry.TLS
	if t == (RegistryTLS{}) {
		return nil, nil
	}
	return c.tlsConfig("registry.tls", t.CAFile, t.CertFile, t.KeyFile, t.ServerName, t.InsecureSkipVerify)
}

// tlsError names the key of the file that failed.
type tlsError struct {
	key, msg, fix string
}

func (e *tlsError) Error() string { return e.key + ": " + e.msg + " (fix: " + e.fix + ")" }

func (c *Config) tlsConfig(block, caFile, certFile, keyFile, serverName string, insecure bool) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName, InsecureSkipVerify: insecure} //nolint:gosec // opt-in, documented as tests only
	if caFile != "" {
		b, err := os.ReadFile(c.Path(caFile))
		if err != nil {
			return nil, &tlsError{block + ".ca_file", err.Error(), "point it at the PEM file of the CA that signed the server's certificate (relative paths are relative to the config file)"}
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, &tlsError{block + ".ca_file", c.Path(caFile) + " holds no PEM certificate", "give a PEM file with -----BEGIN CERTIFICATE----- blocks"}
		}
		cfg.RootCAs = pool
	}
	switch {
	case certFile != "" && keyFile != "":
		pair, err := tls.LoadX509KeyPair(c.Path(certFile), c.Path(keyFile))
		if err != nil {
			return nil, &tlsError{block + ".cert_file", fmt.Sprintf("client certificate %s / key %s: %v", c.Path(certFile), c.Path(keyFile), err),
				"give a PEM certificate and its unencrypted PEM private key (PKCS#1, PKCS#8 or EC)"}
		}
		cfg.Certificates = []tls.Certificate{pair}
	case certFile != "":
		return nil, &tlsError{block + ".key_file", "cert_file without key_file", "set key_file to the client certificate's private key"}
	case keyFile != "":
		return nil, &tlsError{block + ".cert_file", "key_file without cert_file", "set cert_file to the client certificate"}
	}
	return cfg, nil
}

// validateSecurity checks kafka.tls, kafka.sasl and the registry's URL,
// credentials and TLS; files are read now so that a missing or broken one
// fails at start with its key. A key not written in the file (e.g. a
// missing password) is located at its block.
func (c *Config) validateSecurity() []error {
	var errs []error
	add := func(key, msg, fix string) {
		errs = append(errs, &Error{File: c.File, Line: c.lineOf(key), Key: key, Msg: msg, Fix: fix})
	}
	t := c.Kafka.TLS
	if !t.Enabled && (t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ServerName != "" || t.InsecureSkipVerify) {
		add("kafka.tls", "TLS settings are given but TLS is off (enabled: false)", "remove them or set kafka.tls.enabled: true (ORDO_KAFKA_TLS_ENABLED=true)")
	}
	if _, err := c.KafkaTLS(); err != nil {
		addTLSErr(add, err)
	}

	s := c.Kafka.SASL
	both := func(key, a, b string) {
		add(key, "both "+a+" and "+b+" are set", "keep one of them")
	}
	switch mech := strings.ToUpper(s.Mechanism); mech {
	case "":
		if s.Username != "" || s.Password != "" || s.PasswordFile != "" || s.Token != "" || s.TokenFile != "" {
			add("kafka.sasl.mechanism", "credentials are set but no mechanism", "set mechanism: SCRAM-SHA-512 (or PLAIN, SCRAM-SHA-256, OAUTHBEARER), or remove the credentials")
		}
	case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
		if s.Username == "" {
			add("kafka.sasl.username", "empty with mechanism "+mech, "set the SASL user name (or ORDO_KAFKA_SASL_USERNAME)")
		}
		switch {
		case s.Password != "" && s.PasswordFile != "":
			both("kafka.sasl.password", "password", "password_file")
		case s.Password == "" && s.PasswordFile == "":
			add("kafka.sasl.password", "empty with mechanism "+mech, "set ORDO_KAFKA_SASL_PASSWORD or kafka.sasl.password_file (a file, e.g. a mounted Kubernetes Secret)")
		default:
			if _, err := c.SASLPassword(); err != nil {
				add("kafka.sasl.password_file", err.Error(), "point it at a readable, non-empty file holding only the password")
			}
		}
		if s.Token != "" || s.TokenFile != "" || len(s.Extensions) > 0 {
			add("kafka.sasl.token", "token, token_file and extensions are for OAUTHBEARER, not "+mech, "remove them or set mechanism: OAUTHBEARER")
		}
	case "OAUTHBEARER":
		switch {
		case s.Token != "" && s.TokenFile != "":
			both("kafka.sasl.token", "token", "token_file")
		case s.Token == "" && s.TokenFile == "":
			add("kafka.sasl.token", "empty with mechanism OAUTHBEARER", "set kafka.sasl.token_file (re-read on every connection) or ORDO_KAFKA_SASL_TOKEN")
		default:
			if _, err := c.SASLToken(); err != nil {
				add("kafka.sasl.token_file", err.Error(), "point it at a readable, non-empty file holding only the token")
			}
		}
		if s.Password != "" || s.PasswordFile != "" {
			add("kafka.sasl.password", "OAUTHBEARER takes a token, not a password", "remove password/password_file and set token or token_file")
		}
	default:
		add("kafka.sasl.mechanism", fmt.Sprintf("unknown mechanism %q", s.Mechanism), "use PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER")
	}

	r := c.Registry
	u, err := url.Parse(r.URL)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		add("registry.url", fmt.Sprintf("%q is not an http(s) URL", RedactURL(r.URL)), "e.g. http://127.0.0.1:8081")
	case u.User != nil && r.BasicAuth != (BasicAuth{}):
		add("registry.url", "credentials both in the URL (user:password@) and in registry.basic_auth", "keep one; registry.basic_auth.password_file keeps the password out of the config")
	case u.Scheme == "http" && r.TLS != (RegistryTLS{}):
		add("registry.tls", "set, but registry.url is http://", "use an https:// URL or remove registry.tls")
	}
	ba := r.BasicAuth
	switch {
	case ba.Password != "" && ba.PasswordFile != "":
		both("registry.basic_auth.password", "password", "password_file")
	case ba.Username == "" && (ba.Password != "" || ba.PasswordFile != ""):
		add("registry.basic_auth.username", "empty, but a password is set", "set the registry user name")
	case ba.Username != "" && ba.Password == "" && ba.PasswordFile == "":
		add("registry.basic_auth.password", "empty", "set ORDO_REGISTRY_BASIC_AUTH_PASSWORD or registry.basic_auth.password_file")
	case ba.PasswordFile != "":
		if _, err := c.readSecret("", ba.PasswordFile); err != nil {
			add("registry.basic_auth.password_file", err.Error(), "point it at a readable, non-empty file holding only the password")
		}
	}
	switch {
	case r.BearerToken != "" && r.BearerTokenFile != "":
		both("registry.bearer_token", "bearer_token", "bearer_token_file")
	case r.BearerTokenFile != "":
		if _, err := c.readSecret("", r.BearerTokenFile); err != nil {
			add("registry.bearer_token_file", err.Error(), "point it at a readable, non-empty file holding only the token")
		}
	}
	if (r.BearerToken != "" || r.BearerTokenFile != "") && (ba != (BasicAuth{}) || (err == nil && u.User != nil)) {
		add("registry.bearer_token", "set together with basic auth", "a registry takes one Authorization header: keep the bearer token or the basic auth")
	}
	if _, err := c.RegistryTLSConfig(); err != nil {
		addTLSErr(add, err)
	}
	return errs
}

// lineOf is the line of key, else of its closest written parent.
func (c *Config) lineOf(key string) int {
	for k := key; k != ""; {
		if l, ok := c.lines[k]; ok {
			return l
		}
		i := strings.LastIndexByte(k, '.')
		if i < 0 {
			break
		}
		k = k[:i]
	}
	return 0
}

func addTLSErr(add func(key, msg, fix string), err error) {
	if te, ok := err.(*tlsError); ok {
		add(te.key, te.msg, te.fix)
		return
	}
	add("kafka.tls", err.Error(), "check the TLS files")
}

// Redacted is what replaces a secret in any output.
const Redacted = "[REDACTED]"

// Secrets lists every secret value of the config (passwords, tokens, URL
// userinfo passwords), with those in files read now. Empty values are left
// out.
func (c *Config) Secrets() []string {
	var out []string
	add := func(s string) {
		if s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	s := c.Kafka.SASL
	add(s.Password)
	add(s.Token)
	for _, v := range s.Extensions {
		add(v)
	}
	if p, err := c.SASLPassword(); err == nil {
		add(p)
	}
	if s.TokenFile != "" {
		if tok, err := c.SASLToken(); err == nil {
			add(tok)
		}
	}
	add(c.Registry.BasicAuth.Password)
	add(c.Registry.BearerToken)
	if u, err := url.Parse(c.Registry.URL); err == nil && u.User != nil {
		p, _ := u.User.Password()
		add(p)
	}
	if rc, err := c.RegistryCreds(); err == nil {
		add(rc.Password)
		add(rc.BearerToken)
	}
	return out
}

// Redactor replaces secrets (and the password of any user:password@ URL) in
// text. The zero value only redacts URL userinfo.
type Redactor struct {
	r *strings.Replacer
}

// Redactor returns a Redactor for the config's secrets, read now.
func (c *Config) Redactor() Redactor { return NewRedactor(c.Secrets()) }

// NewRedactor redacts the given secrets.
func NewRedactor(secrets []string) Redactor {
	var pairs []string
	for _, s := range secrets {
		if s == "" {
			continue
		}
		pairs = append(pairs, s, Redacted)
		// URL- and JSON-escaped forms show up in errors that quote a URL or a value.
		if e := url.QueryEscape(s); e != s {
			pairs = append(pairs, e, Redacted)
		}
		if e := url.PathEscape(s); e != s {
			pairs = append(pairs, e, Redacted)
		}
		if q := fmt.Sprintf("%q", s); q[1:len(q)-1] != s {
			pairs = append(pairs, q[1:len(q)-1], Redacted)
		}
	}
	if len(pairs) == 0 {
		return Redactor{}
	}
	return Redactor{r: strings.NewReplacer(pairs...)}
}

// userinfo matches scheme://user:password@ in text. The password part may
// hold '/' and ':' (a badly escaped URL still must not leak it).
var userinfo = regexp.MustCompile(`([a-zA-Z][a-zA-Z0-9+.-]*://[^/@\s:"']*):[^@\s"']*@`)

// Redact returns s with every secret and URL password replaced.
func (r Redactor) Redact(s string) string {
	if r.r != nil {
		s = r.r.Replace(s)
	}
	if strings.Contains(s, "@") {
		s = userinfo.ReplaceAllString(s, "${1}:"+Redacted+"@")
	}
	return s
}

// Active reports whether the redactor knows a secret (URL userinfo is
// redacted either way).
func (r Redactor) Active() bool { return r.r != nil }

// RedactURL hides the password of a URL's userinfo.
func RedactURL(s string) string { return Redactor{}.Redact(s) }

// Redacted is a copy of the config with every secret value replaced by
// Redacted, for printing. File names stay (they are not secrets).
func (c *Config) Redacted() *Config {
	out := *c
	out.Kafka.SASL = c.Kafka.SASL
	red := func(s *string) {
		if *s != "" {
			*s = Redacted
		}
	}
	red(&out.Kafka.SASL.Password)
	red(&out.Kafka.SASL.Token)
	if len(c.Kafka.SASL.Extensions) > 0 {
		out.Kafka.SASL.Extensions = map[string]string{}
		for k := range c.Kafka.SASL.Extensions {
			out.Kafka.SASL.Extensions[k] = Redacted
		}
	}
	red(&out.Registry.BasicAuth.Password)
	red(&out.Registry.BearerToken)
	out.Registry.URL = RedactURL(c.Registry.URL)
	// Pipeline configs can hold secrets too (e.g. enrich_http headers); any
	// known secret value in them is replaced.
	rd := c.Redactor()
	out.Pipeline = make([]PipelineEntry, len(c.Pipeline))
	for i, e := range c.Pipeline {
		out.Pipeline[i] = e
		out.Pipeline[i].Config = redactNode(e.Config, rd)
	}
	return &out
}

func redactNode(n yaml.Node, r Redactor) yaml.Node {
	out := n
	if n.Kind == yaml.ScalarNode {
		out.Value = r.Redact(n.Value)
	}
	if len(n.Content) > 0 {
		out.Content = make([]*yaml.Node, len(n.Content))
		for i, c := range n.Content {
			cc := redactNode(*c, r)
			out.Content[i] = &cc
		}
	}
	return out
}

// MarshalYAML writes a Duration as "100ms" (for `ordo config show`).
func (d Duration) MarshalYAML() (any, error) { return d.D().String(), nil }
