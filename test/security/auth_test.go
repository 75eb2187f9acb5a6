package security

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBadCredentialsFailAtStart: wrong or missing credentials and
// certificates make `ordo run` exit non-zero within seconds with an error
// naming the key to fix, never printing a secret.
func TestBadCredentialsFailAtStart(t *testing.T) {
	sc := newScenario(t, "ordo-cred-"+randHex(3))
	sc.grant(minimumACLs...)
	rel := func(p string) string {
		r, err := filepath.Rel(sc.dir, p)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	wrongPW := "wrong-" + randHex(10)
	if err := os.WriteFile(filepath.Join(sc.dir, "wrong.password"), []byte(wrongPW), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sc.dir, "not-a-cert.pem"), []byte("hello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		o    cfgOpts
		want []string
	}{
		{"wrong password", cfgOpts{sasl: fmt.Sprintf("{mechanism: SCRAM-SHA-512, username: %s, password_file: wrong.password}", sc.user)},
			[]string{"SASL_AUTHENTICATION_FAILED", `user "` + sc.user + `"`, "kafka.sasl.password_file"}},
		{"unknown user", cfgOpts{sasl: "{mechanism: SCRAM-SHA-512, username: nobody, password_file: ordo.password}"},
			[]string{"SASL_AUTHENTICATION_FAILED", `user "nobody"`}},
		{"mechanism not enabled", cfgOpts{sasl: fmt.Sprintf("{mechanism: SCRAM-SHA-256, username: %s, password_file: ordo.password}", sc.user)},
			[]string{"UNSUPPORTED_SASL_MECHANISM", "SCRAM-SHA-256", "kafka.sasl.mechanism"}},
		{"untrusted broker certificate", cfgOpts{tls: fmt.Sprintf("{ca_file: %s, cert_file: %s, key_file: %s}", rel(suite.pki.otherCAFile), rel(suite.pki.clientCert), rel(suite.pki.clientKey))},
			[]string{"kafka.tls.ca_file", "not trusted"}},
		{"certificate for another name", cfgOpts{tls: fmt.Sprintf("{ca_file: %s, cert_file: %s, key_file: %s, server_name: kafka.invalid}", rel(suite.pki.caFile), rel(suite.pki.clientCert), rel(suite.pki.clientKey))},
			[]string{"kafka.tls.server_name", "does not match"}},
		{"TLS on a plaintext listener", cfgOpts{brokers: suite.plain},
			[]string{"kafka.tls", "does not speak TLS"}},
		{"plaintext on the TLS listener", cfgOpts{tls: "false"},
			[]string{"kafka.tls", "speaks TLS but kafka.tls is off"}},
		{"no client certificate (mTLS)", cfgOpts{tls: fmt.Sprintf("{ca_file: %s}", rel(suite.pki.caFile))},
			[]string{"kafka.tls.cert_file", "client certificate"}},
		{"missing password file", cfgOpts{sasl: fmt.Sprintf("{mechanism: SCRAM-SHA-512, username: %s, password_file: nowhere.password}", sc.user)},
			[]string{"ordo.yaml:", "kafka.sasl.password_file", "nowhere.password"}},
		{"CA file is not PEM", cfgOpts{tls: "{ca_file: not-a-cert.pem}"},
			[]string{"ordo.yaml:", "kafka.tls.ca_file", "no PEM certificate"}},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			sc := sc.with(t)
			cfg, _ := sc.writeConfig("ordo.yaml", c.o)
			code, out, took := sc.runOrdo("bad-"+strings.ReplaceAll(c.name, " ", "-"), baseEnv(), 60*time.Second, "run", "--config", cfg)
			if code <= 0 {
				t.Fatalf("ordo did not fail (exit %d after %v):\n%s", code, took, tail(out, 30))
			}
			if took > 15*time.Second {
				t.Errorf("failing took %v; want a few seconds", took)
			}
			i := strings.LastIndex(out, "ordo: ")
			if i < 0 {
				t.Fatalf("no error printed:\n%s", tail(out, 20))
			}
			for _, w := range c.want {
				if !strings.Contains(out[i:], w) {
					t.Errorf("the error lacks %q:\n%s", w, out[i:])
				}
			}
			for _, secret := range []string{sc.pass, wrongPW, suite.regAuth[1]} {
				if strings.Contains(out, secret) {
					t.Errorf("the output contains a secret (%.4s...)", secret)
				}
			}
			t.Logf("exit %d after %.1fs: %s", code, took.Seconds(), firstProblem(out[i:]))
		})
	}
	// mTLS, SCRAM and the ACLs are right when only the credentials change:
	// the same config with the right password runs.
	cfg, _ := sc.writeConfig("ordo.yaml", cfgOpts{})
	p := sc.startOrdo("good", baseEnv(), "run", "--config", cfg)
	waitLog(t, p, "kafka preflight ok", 30*time.Second)
}

// unsecuredJWT is a token Kafka's default OAUTHBEARER validator accepts
// (alg "none": test brokers only).
func unsecuredJWT(sub string, exp time.Time) string {
	enc := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	return enc(map[string]string{"alg": "none"}) + "." + enc(map[string]any{"sub": sub, "iat": time.Now().Add(-time.Minute).Unix(), "exp": exp.Unix()}) + "."
}

// TestOAuthBearerAndRegistryBearerToken runs ordo with SASL/OAUTHBEARER (a
// token file) and a registry that wants a bearer token, as a principal with
// only the minimum ACLs, and verifies exactly-once output. An expired token
// fails at start with a clear error.
func TestOAuthBearerAndRegistryBearerToken(t *testing.T) {
	sc := newScenario(t, "ordo-oauth-"+randHex(3))
	sc.grant(minimumACLs...)
	regToken := "regtok-" + randHex(12)
	srv, err := newTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+regToken {
			http.Error(w, `{"error_code":40101,"message":"bad token"}`, http.StatusUnauthorized)
			return
		}
		r.Header.Set("Authorization", basicAuth(suite.regAuth[0], suite.regAuth[1]))
		suite.registry.Handler().ServeHTTP(w, r)
	}), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(sc.dir, name), []byte(content+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	kafkaToken := unsecuredJWT(sc.user, time.Now().Add(time.Hour))
	write("kafka.token", kafkaToken)
	write("registry.token", regToken)
	caRel, _ := filepath.Rel(sc.dir, suite.pki.caFile)
	o := cfgOpts{
		sasl:     "{mechanism: OAUTHBEARER, token_file: kafka.token}",
		registry: fmt.Sprintf("  url: %s\n  bearer_token_file: registry.token\n  tls: {ca_file: %s}\n", srv.URL, caRel),
	}
	cfg, _ := sc.writeConfig("ordo.yaml", o)
	pub := sc.newPublisher()
	pub.publish(500, 25)
	p := sc.startOrdo("ordo", baseEnv(), "run", "--config", cfg)
	sc.waitProcessed(p, 2*time.Minute)
	p.stop(20 * time.Second)
	rep := sc.verify(pub)
	out := p.output(t)
	if !strings.Contains(out, `"principal":"User:`+sc.user+`"`) {
		t.Errorf("the preflight did not name the token's principal User:%s:\n%s", sc.user, grepLines(out, "preflight", 3))
	}
	for _, secret := range []string{kafkaToken, regToken} {
		if strings.Contains(out, secret) {
			t.Error("ordo's output contains a token")
		}
	}
	t.Logf("OAUTHBEARER as User:%s, registry bearer token: %d events, %d commands, %d dead letters, exactly once", sc.user, rep.Published, rep.CommandsSeen, rep.DeadLettersSeen)

	expired := unsecuredJWT(sc.user, time.Now().Add(-time.Hour))
	write("kafka.token", expired)
	code, out, took := sc.runOrdo("expired", baseEnv(), 60*time.Second, "run", "--config", cfg)
	if code <= 0 || took > 15*time.Second {
		t.Fatalf("an expired token did not fail at start (exit %d after %v):\n%s", code, took, tail(out, 20))
	}
	if !strings.Contains(out, "SASL_AUTHENTICATION_FAILED") || !strings.Contains(out, "kafka.sasl.token") {
		t.Errorf("the error does not say the token was refused:\n%s", tail(out, 10))
	}
	if strings.Contains(out, expired) {
		t.Error("the output contains the token")
	}
}
