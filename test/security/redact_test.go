package security

import (
	"fmt"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestSecretsNeverPrinted runs ordo with a distinctive Kafka password (from
// ORDO_KAFKA_SASL_PASSWORD) and registry credentials in the registry URL
// (https://user:password@host, the reported bug), at debug level, with the
// registry down at first so that every registry call fails and /readyz
// quotes the error. It collects every output: the logs, /readyz, /metrics,
// `ordo config show` and `ordo config validate`, a wrong-password run and a
// config error quoting the URL; none may contain a secret in any encoding.
func TestSecretsNeverPrinted(t *testing.T) {
	sc := newScenario(t, "ordo-redact-"+randHex(3))
	sc.grant(minimumACLs...)
	regUser, regPass := "reg-redact", "Reg:Secret/"+randHex(8) // ':' and '/' are escaped in a URL
	regAddr := freeAddr(t)
	regURL := (&url.URL{Scheme: "https", User: url.UserPassword(regUser, regPass), Host: regAddr}).String()
	proxy := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != regUser || p != regPass {
			http.Error(w, `{"error_code":40101,"message":"unauthorized"}`, http.StatusUnauthorized)
			return
		}
		r.Header.Set("Authorization", basicAuth(suite.regAuth[0], suite.regAuth[1]))
		suite.registry.Handler().ServeHTTP(w, r)
	})
	caRel, _ := filepath.Rel(sc.dir, suite.pki.caFile)
	cfg, adminAddr := sc.writeConfig("ordo.yaml", cfgOpts{
		sasl:     fmt.Sprintf("{mechanism: SCRAM-SHA-512, username: %s}", sc.user), // password from the environment
		registry: fmt.Sprintf("  url: %s\n  timeout: 1s\n  tls: {ca_file: %s}\n", regURL, caRel),
	})
	env := baseEnv("ORDO_KAFKA_SASL_PASSWORD=" + sc.pass)
	secrets := []string{sc.pass, regPass}
	outputs := map[string]string{} // what → text

	// 1. The registry is down: registry calls fail, /readyz says why.
	pub := sc.newPublisher()
	pub.publish(200, 20)
	p := sc.startOrdo("ordo", env, "run", "--config", cfg, "--log-level", "debug")
	deadline := time.Now().Add(60 * time.Second)
	var ready string
	for {
		code, body := httpGetMaybe("http://" + adminAddr + "/readyz")
		if code == http.StatusServiceUnavailable && strings.Contains(body, "schema registry unreachable") && strings.Contains(body, regAddr) {
			ready = body
			break
		}
		if time.Now().After(deadline) || !p.alive() {
			t.Fatalf("/readyz never reported the registry error quoting %s (last %d %q):\n%s", regAddr, code, body, tail(p.output(t), 20))
		}
		time.Sleep(250 * time.Millisecond)
	}
	outputs["/readyz (registry down)"] = ready
	// The reported bug: WARN lines quoting the registry URL.
	waitLog(t, p, `"level":"WARN","msg":"transient failure; aborting the transaction`, 60*time.Second)
	_, outputs["/metrics"] = httpGet(t, "http://"+adminAddr+"/metrics")

	// 2. The registry comes up: everything is processed, exactly once.
	srv, err := newTLSServer(proxy, regAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	sc.waitProcessed(p, 2*time.Minute)
	_, outputs["/readyz (up)"] = httpGet(t, "http://"+adminAddr+"/readyz")
	p.stop(20 * time.Second)
	rep := sc.verify(pub)
	log := p.output(t)
	outputs["ordo run log (debug)"] = log
	errLines, warnLines := 0, 0
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "https://"+regAddr) || strings.Contains(l, "@"+regAddr) {
			errLines++
			if strings.Contains(l, `"level":"WARN"`) {
				warnLines++
			}
		}
	}
	if warnLines == 0 {
		t.Fatalf("no WARN line quotes the registry URL https://%s: the test did not provoke what it checks", regAddr)
	}

	// 3. The CLI: config show and validate, a wrong password, a config
	// error that quotes the URL.
	run := func(name string, env []string, args ...string) string {
		cmd := exec.Command(suite.bin, args...)
		cmd.Env, cmd.Dir = env, sc.dir
		out, _ := cmd.CombinedOutput()
		outputs[name] = string(out)
		return string(out)
	}
	show := run("ordo config show", env, "config", "show", cfg)
	if !strings.Contains(show, "[REDACTED]") || !strings.Contains(show, regUser) {
		t.Errorf("config show does not show the redacted credentials:\n%s", show)
	}
	run("ordo config validate", env, "config", "validate", cfg)
	wrong := "Wrong-" + randHex(10)
	secrets = append(secrets, wrong)
	if out := run("ordo run (wrong password)", baseEnv("ORDO_KAFKA_SASL_PASSWORD="+wrong), "run", "--config", cfg, "--log-level", "debug"); !strings.Contains(out, "SASL_AUTHENTICATION_FAILED") {
		t.Errorf("a wrong password did not fail authentication:\n%s", tail(out, 10))
	}
	badURL := strings.Replace(regURL, "https://", "htps://", 1)
	if out := run("ordo config validate (bad URL)", append(env, "ORDO_REGISTRY_URL="+badURL), "config", "validate", cfg); !strings.Contains(out, "registry.url") {
		t.Errorf("a bad registry URL was not reported:\n%s", out)
	}

	// 4. No secret anywhere, in any encoding.
	for what, text := range outputs {
		for _, s := range secrets {
			forms := []string{s, url.QueryEscape(s), url.PathEscape(s), url.UserPassword("x", s).String()[2:]}
			for i, form := range forms {
				if !slices.Contains(forms[:i], form) && strings.Contains(text, form) {
					t.Errorf("%s contains a secret (%q form of %.6s...):\n%s", what, form, s, grepLines(text, form, 3))
				}
			}
		}
	}
	t.Logf("%d outputs checked (%d log lines, %d quoting the registry URL, %d of them WARN); %d events exactly once", len(outputs), strings.Count(log, "\n"), errLines, warnLines, rep.Published)
}

// httpGetMaybe is httpGet that reports a connection error as code 0.
func httpGetMaybe(u string) (int, string) {
	resp, err := http.Get(u)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var sb strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		sb.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, sb.String()
}
