package security

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/ordo-dev/ordo/internal/demo"
	"github.com/ordo-dev/ordo/internal/testkit"
	"github.com/ordo-dev/ordo/publish"
	"github.com/ordo-dev/ordo/schemas"
)

// scenario is one test's private pipeline on the shared secured broker:
// its own topics, group, transactional id prefix and Kafka user.
type scenario struct {
	t      *testing.T
	dir    string
	prefix string
	inputs map[string]string // demo topic → this scenario's topic
	outs   []string          // command topics
	dlq    string
	group  string
	txn    string // transactional id prefix
	user   string // Kafka user ordo runs as
	pass   string
	adm    *kadm.Client
	admCl  *kgo.Client
}

var demoOutputs = []string{
	"commands.reserve-inventory.v1", "commands.capture-payment.v1", "commands.ship-order.v1",
	"commands.cancel-order.v1", "commands.notify-customer.v1",
}

// newScenario creates the topics (3 partitions each) and the SCRAM user
// user (password random). It grants no ACL.
func newScenario(t *testing.T, user string) *scenario {
	t.Helper()
	requireBroker(t)
	p := testkit.UniqueName(t, "sec")
	// Under the suite dir, not t.TempDir(): a failed run keeps the logs.
	dir := filepath.Join(suite.dir, p)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	sc := &scenario{
		t: t, dir: dir, prefix: p,
		inputs: map[string]string{},
		dlq:    p + ".dead-letter",
		group:  p + ".group",
		txn:    p + ".txn",
		user:   user,
		pass:   "pw-" + randHex(12),
	}
	for _, in := range []string{demo.TopicOrders, demo.TopicPayments, demo.TopicWarehouse} {
		sc.inputs[in] = p + "." + in
	}
	for _, o := range demoOutputs {
		sc.outs = append(sc.outs, p+"."+o)
	}
	sc.admCl = adminClient(t)
	sc.adm = kadm.NewClient(sc.admCl)
	sc.createTopics(append(append(sc.inputTopics(), sc.outs...), sc.dlq)...)
	createUser(t, sc.adm, user, sc.pass)
	return sc
}

func (sc *scenario) inputTopics() []string {
	var out []string
	for _, in := range []string{demo.TopicOrders, demo.TopicPayments, demo.TopicWarehouse} {
		out = append(out, sc.inputs[in])
	}
	return out
}

func (sc *scenario) createTopics(topics ...string) {
	t := sc.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	resp, err := sc.adm.CreateTopics(ctx, 3, 1, nil, topics...)
	if err != nil {
		t.Fatalf("create topics: %v", err)
	}
	for _, r := range resp.Sorted() {
		if r.Err != nil && !errors.Is(r.Err, kerr.TopicAlreadyExists) {
			t.Fatalf("create topic %s: %v", r.Topic, r.Err)
		}
	}
	for {
		md, err := sc.adm.Metadata(ctx, topics...)
		ready := err == nil
		for _, name := range topics {
			td, ok := md.Topics[name]
			if !ok || td.Err != nil || len(td.Partitions) == 0 {
				ready = false
				break
			}
			for _, p := range td.Partitions {
				if p.Err != nil || p.Leader < 0 {
					ready = false
				}
			}
		}
		if ready {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("topics have no leaders after 60s: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// The minimum ACLs of docs/security.md, by name, for the scenario's user.
const (
	aclInputsRead = "READ inputs"
	aclGroupRead  = "READ group"
	aclOutputs    = "WRITE outputs"
	aclDLQ        = "WRITE dead-letter topic"
	aclTxn        = "WRITE transactional id prefix"
	// not in the minimum: makes the dead-letter topic describable, so that
	// a missing WRITE shows in its authorized operations
	aclDLQRead = "READ dead-letter topic"
)

var minimumACLs = []string{aclInputsRead, aclGroupRead, aclOutputs, aclDLQ, aclTxn}

func (sc *scenario) acl(name string) *kadm.ACLBuilder {
	b := kadm.NewACLs().Allow("User:" + sc.user).AllowHosts("*").ResourcePatternType(kadm.ACLPatternLiteral)
	switch name {
	case aclInputsRead:
		return b.Topics(sc.inputTopics()...).Operations(kadm.OpRead)
	case aclGroupRead:
		return b.Groups(sc.group).Operations(kadm.OpRead)
	case aclOutputs:
		return b.Topics(sc.outs...).Operations(kadm.OpWrite)
	case aclDLQ:
		return b.Topics(sc.dlq).Operations(kadm.OpWrite)
	case aclDLQRead:
		return b.Topics(sc.dlq).Operations(kadm.OpRead)
	case aclTxn:
		// "<prefix>-": the replica ids of this pipeline, not of one whose
		// prefix merely starts the same
		return b.TransactionalIDs(sc.txn + "-").Operations(kadm.OpWrite).ResourcePatternType(kadm.ACLPatternPrefixed)
	}
	sc.t.Fatalf("unknown ACL %q", name)
	return nil
}

// grant adds ACLs and waits until the broker's authorizer has them (they
// travel through the metadata log).
func (sc *scenario) grant(names ...string) {
	t := sc.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, n := range names {
		res, err := sc.adm.CreateACLs(ctx, sc.acl(n))
		if err != nil {
			t.Fatalf("grant %s: %v", n, err)
		}
		for _, r := range res {
			if r.Err != nil {
				t.Fatalf("grant %s: %v (%s)", n, r.Err, r.ErrMessage)
			}
		}
	}
	sc.waitACLs(ctx, names, true)
}

// revoke deletes ACLs and waits until they are gone.
func (sc *scenario) revoke(names ...string) {
	t := sc.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, n := range names {
		res, err := sc.adm.DeleteACLs(ctx, sc.acl(n))
		if err != nil {
			t.Fatalf("revoke %s: %v", n, err)
		}
		for _, r := range res {
			if r.Err != nil {
				t.Fatalf("revoke %s: %v (%s)", n, r.Err, r.ErrMessage)
			}
		}
	}
	sc.waitACLs(ctx, names, false)
}

func (sc *scenario) waitACLs(ctx context.Context, names []string, present bool) {
	t := sc.t
	t.Helper()
	for _, n := range names {
		for {
			res, err := sc.adm.DescribeACLs(ctx, sc.acl(n))
			found := 0
			if err == nil {
				for _, r := range res {
					found += len(r.Described)
				}
			}
			if err == nil && (found > 0) == present {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("ACL %s present=%v not visible after 30s: %v", n, present, err)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	// DescribeACLs answers from the same authorizer that checks requests,
	// but give the listener a moment to see the new image.
	time.Sleep(200 * time.Millisecond)
}

// cfgOpts shape the ordo config a scenario writes.
type cfgOpts struct {
	brokers  string // "" = the SASL_SSL listener
	sasl     string // YAML mapping of kafka.sasl; "" = SCRAM-SHA-512 as sc.user with password_file
	tls      string // YAML of kafka.tls; "" = the test CA and client certificate (relative paths)
	registry string // YAML lines of registry: (indented 2); "" = the TLS registry with basic auth
	admin    string // admin.listen ("" = a free port)
}

// writeConfig writes ordo.yaml (and the secret files it names) into the
// scenario dir: the demo pipeline of examples/orders/ordo.yaml on the
// scenario's topics, connecting over SASL_SSL with mTLS.
func (sc *scenario) writeConfig(name string, o cfgOpts) (path, adminAddr string) {
	t := sc.t
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(sc.dir, "ordo.password"), []byte(sc.pass+"\n"), 0o600))
	must(os.WriteFile(filepath.Join(sc.dir, "registry.password"), []byte(suite.regAuth[1]+"\n"), 0o600))
	csv, err := os.ReadFile(filepath.Join(repoRoot, "examples", "orders", "customer-tiers.csv"))
	must(err)
	must(os.WriteFile(filepath.Join(sc.dir, "customer-tiers.csv"), csv, 0o644))
	example, err := os.ReadFile(filepath.Join(repoRoot, "examples", "orders", "router.yaml"))
	must(err)
	text := string(example)
	i, j := strings.Index(text, "\npipeline:"), strings.Index(text, "\nadmin:")
	if i < 0 || j < i {
		t.Fatal("examples/orders/ordo.yaml: no pipeline: ... admin: section")
	}
	pipeline := strings.ReplaceAll(text[i:j], "topic: commands.", "topic: "+sc.prefix+".commands.")

	rel := func(p string) string {
		r, err := filepath.Rel(sc.dir, p)
		must(err)
		return r
	}
	if o.sasl == "" {
		o.sasl = fmt.Sprintf("{mechanism: SCRAM-SHA-512, username: %s, password_file: ordo.password}", sc.user)
	}
	if o.tls == "" {
		o.tls = fmt.Sprintf("{ca_file: %s, cert_file: %s, key_file: %s}", rel(suite.pki.caFile), rel(suite.pki.clientCert), rel(suite.pki.clientKey))
	}
	if o.registry == "" {
		o.registry = fmt.Sprintf("  url: %s\n  basic_auth: {username: %s, password_file: registry.password}\n  tls: {ca_file: %s}\n",
			suite.regURL, suite.regAuth[0], rel(suite.pki.caFile))
	}
	if o.admin == "" {
		o.admin = freeAddr(t)
	}
	if o.brokers == "" {
		o.brokers = suite.secure
	}
	cfg := fmt.Sprintf(`# written by test/security for %s
kafka:
  brokers: [%s]
  group: %s
  transactional_id_prefix: %s
  replica_id: r1
  tls: %s
  sasl: %s
registry:
%sinputs: [%s]
dead_letter_topic: %s
processing:
  commit_interval: 100ms
admin:
  listen: %s
  lag_interval: 1s
%s
`, sc.t.Name(), o.brokers, sc.group, sc.txn, o.tls, o.sasl, o.registry, strings.Join(sc.inputTopics(), ", "), sc.dlq, o.admin, pipeline)
	path = filepath.Join(sc.dir, name)
	must(os.WriteFile(path, []byte(cfg), 0o600))
	return path, o.admin
}

func freeAddr(t testing.TB) string {
	addr, err := testkit.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// ordoProc is a running ordo process; its combined output goes to a file.
type ordoProc struct {
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	mu      sync.Mutex
	err     error
}

// baseEnv is the environment ordo processes get: the test's, without any
// ORDO_* variable that would override the config.
func baseEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ORDO_") || strings.HasPrefix(kv, "ORDO_CACHE_DIR=") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

func (sc *scenario) startOrdo(name string, env []string, args ...string) *ordoProc {
	t := sc.t
	t.Helper()
	logPath := filepath.Join(sc.dir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(suite.bin, args...)
	cmd.Env = env
	cmd.Dir = sc.dir
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatal(err)
	}
	p := &ordoProc{cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		f.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(p.done)
	}()
	t.Cleanup(func() { p.stop(10 * time.Second) })
	return p
}

// runOrdo runs ordo to completion (or kills it after timeout) and returns
// its exit code, combined output and how long it ran.
func (sc *scenario) runOrdo(name string, env []string, timeout time.Duration, args ...string) (code int, out string, took time.Duration) {
	t0 := time.Now()
	p := sc.startOrdo(name, env, args...)
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.stop(5 * time.Second)
		return -1, p.output(sc.t), time.Since(t0)
	}
	return p.exitCode(), p.output(sc.t), time.Since(t0)
}

func (p *ordoProc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

func (p *ordoProc) exitCode() int {
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	var ee *exec.ExitError
	switch {
	case p.err == nil:
		return 0
	case errors.As(p.err, &ee):
		return ee.ExitCode()
	}
	return -1
}

// stop sends SIGTERM, then SIGKILL after d.
func (p *ordoProc) stop(d time.Duration) {
	if !p.alive() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(d):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *ordoProc) output(t testing.TB) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// publisher writes demo traffic (valid events, poison) as User:admin,
// through the Publisher SDK and the TLS registry with basic auth.
type publisher struct {
	cl    *kgo.Client
	pub   *publish.Publisher
	seed  uint64
	mu    sync.Mutex
	all   []demo.Published
	sc    *scenario
	batch int
}

func (sc *scenario) newPublisher() *publisher {
	t := sc.t
	t.Helper()
	httpcl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: clientTLS(t)}}
	rc, err := sr.NewClient(sr.URLs(suite.regURL), sr.HTTPClient(httpcl), sr.BasicAuth(suite.regAuth[0], suite.regAuth[1]))
	if err != nil {
		t.Fatal(err)
	}
	readers, err := schemas.Demo()
	if err != nil {
		t.Fatal(err)
	}
	strategy, _ := schemas.ParseSubjectStrategy("topic_name")
	serde := schemas.NewSerde(schemas.NewRegistry(rc), readers, schemas.WithSubjectStrategy(strategy))
	cl := adminClient(t, kgo.ProducerLinger(5*time.Millisecond))
	return &publisher{cl: cl, pub: publish.New(cl, serde, "security-test"), seed: uint64(time.Now().UnixNano()), sc: sc}
}

// publish writes n records, every poisonEvery-th one poison, and returns
// them (with their offsets).
func (p *publisher) publish(n, poisonEvery int) []demo.Published {
	t := p.sc.t
	t.Helper()
	p.batch++
	g := demo.NewGenerator(p.cl, p.pub, demo.Options{Events: n, PoisonEvery: poisonEvery, Seed: p.seed + uint64(p.batch), Topics: p.sc.inputs})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := g.Run(ctx); err != nil {
		t.Fatalf("publish: %v", err)
	}
	got := g.Published()
	p.mu.Lock()
	p.all = append(p.all, got...)
	p.mu.Unlock()
	return got
}

func (p *publisher) published() []demo.Published {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.all)
}

// committedOffsets is the group's committed offset per input partition.
func (sc *scenario) committedOffsets() map[string]map[int32]int64 {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out := map[string]map[int32]int64{}
	var offs kadm.OffsetResponses
	for {
		var err error
		// Retried: the offsets topic's coordinator may still be loading.
		if offs, err = sc.adm.FetchOffsets(ctx, sc.group); err == nil {
			break
		}
		if ctx.Err() != nil {
			sc.t.Fatalf("fetch offsets of %s: %v", sc.group, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	offs.Each(func(o kadm.OffsetResponse) {
		if out[o.Topic] == nil {
			out[o.Topic] = map[int32]int64{}
		}
		out[o.Topic][o.Partition] = o.At
	})
	return out
}

// waitProcessed waits until the group committed every input to its end.
func (sc *scenario) waitProcessed(p *ordoProc, timeout time.Duration) {
	t := sc.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last string
	for {
		ends, err := sc.adm.ListEndOffsets(ctx, sc.inputTopics()...)
		if err == nil {
			err = ends.Error()
		}
		if err == nil {
			c := sc.committedOffsets()
			last = ""
			ends.Each(func(o kadm.ListedOffset) {
				if at, ok := c[o.Topic][o.Partition]; (!ok && o.Offset > 0) || at < o.Offset {
					last += fmt.Sprintf(" %s/%d committed %d of %d;", o.Topic, o.Partition, at, o.Offset)
				}
			})
			if last == "" {
				return
			}
		} else {
			last = err.Error()
		}
		if p != nil && !p.alive() {
			t.Fatalf("ordo exited (code %d) before processing everything:%s\n%s", p.exitCode(), last, tail(p.output(t), 40))
		}
		select {
		case <-ctx.Done():
			out := ""
			if p != nil {
				out = tail(p.output(t), 40)
			}
			t.Fatalf("inputs not processed within %v:%s\n%s", timeout, last, out)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// verify checks the committed output against everything published: every
// valid input produced exactly its commands, no command twice, every
// poison record is in the dead-letter topic exactly once.
func (sc *scenario) verify(pub *publisher) *demo.Report {
	t := sc.t
	t.Helper()
	cl := adminClient(t, kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	published := pub.published()
	rep, err := demo.Verify(ctx, cl, sc.adm, sc.group, published, sc.outs, sc.dlq, nil)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if !rep.OK || rep.NotYetProcessed != 0 || rep.CommandsSeen != rep.CommandsExpected || rep.DeadLettersSeen != rep.PoisonPublished || rep.Published != len(published) {
		t.Fatalf("not exactly once: %+v", *rep)
	}
	return rep
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// httpGet returns the status and body of an admin endpoint.
func httpGet(t testing.TB, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitLog waits until ordo's output contains want.
func waitLog(t testing.TB, p *ordoProc, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if bytes.Contains([]byte(p.output(t)), []byte(want)) {
			return
		}
		if !p.alive() {
			t.Fatalf("ordo exited (code %d) before logging %q:\n%s", p.exitCode(), want, tail(p.output(t), 40))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("ordo did not log %q within %v:\n%s", want, timeout, tail(p.output(t), 40))
}
