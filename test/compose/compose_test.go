// Package compose checks docker-compose.yml, the Dockerfile and the files they
// reference without a Docker engine: the compose file parses, everything it
// mounts or builds from exists, its ports are ordo's defaults, every ordo
// replica gets a distinct and stable transactional id in one group, and the
// image is static and non-root. `docker compose up` itself is not run here.
package compose_test

import (
	"bufio"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/ordo-dev/ordo/internal/config"
	"github.com/ordo-dev/ordo/internal/testkit"
)

// root is the repository root.
func root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

type build struct {
	Context    string            `yaml:"context"`
	Dockerfile string            `yaml:"dockerfile"`
	Args       map[string]string `yaml:"args"`
}

type service struct {
	Image       string            `yaml:"image"`
	Build       *build            `yaml:"build"`
	Command     []string          `yaml:"command"`
	Hostname    string            `yaml:"hostname"`
	Environment map[string]string `yaml:"environment"`
	Ports       []string          `yaml:"ports"`
	Volumes     []string          `yaml:"volumes"`
	DependsOn   yaml.Node         `yaml:"depends_on"`
	Restart     string            `yaml:"restart"`
	Healthcheck map[string]any    `yaml:"healthcheck"`
	Scale       *int              `yaml:"scale"`
	Deploy      map[string]any    `yaml:"deploy"`
	StopGrace   string            `yaml:"stop_grace_period"`
}

type composeFile struct {
	Name     string              `yaml:"name"`
	Services map[string]*service `yaml:"services"`
	Volumes  map[string]any      `yaml:"volumes"`
}

func load(t *testing.T) *composeFile {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root(), "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var top map[string]yaml.Node
	if err := yaml.Unmarshal(data, &top); err != nil {
		t.Fatalf("docker-compose.yml does not parse: %v", err)
	}
	for k := range top {
		if !strings.HasPrefix(k, "x-") && !slices.Contains([]string{"name", "services", "volumes", "networks", "configs", "secrets"}, k) {
			t.Errorf("docker-compose.yml: unknown top-level key %q", k)
		}
	}
	var c composeFile
	// yaml.v3 resolves the anchors and merge keys (<<) as compose does.
	if err := yaml.Unmarshal(data, &c); err != nil {
		t.Fatalf("docker-compose.yml does not decode: %v", err)
	}
	if len(c.Services) == 0 {
		t.Fatal("docker-compose.yml has no services")
	}
	return &c
}

// replicas are the services running `ordo run`.
func replicas(c *composeFile) []string {
	var out []string
	for name, s := range c.Services {
		if len(s.Command) > 0 && s.Command[0] == "run" {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// flag returns the value of --name in args ("" if absent).
func flag(args []string, name string) string {
	for i, a := range args {
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

// bind is one short-syntax volume entry.
type bind struct{ src, dst string }

func binds(s *service) []bind {
	var out []bind
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) < 2 {
			continue
		}
		out = append(out, bind{parts[0], parts[1]})
	}
	return out
}

// hostPath maps a container path of s to the repository file bind-mounted
// there ("" if none).
func hostPath(s *service, container string) string {
	for _, b := range binds(s) {
		if !strings.HasPrefix(b.src, ".") {
			continue
		}
		if container == b.dst {
			return filepath.Join(root(), b.src)
		}
		if rest, ok := strings.CutPrefix(container, b.dst+"/"); ok {
			return filepath.Join(root(), b.src, rest)
		}
	}
	return ""
}

// published returns host port -> container port of s.
func published(t *testing.T, name string, s *service) map[int]int {
	t.Helper()
	out := map[int]int{}
	for _, p := range s.Ports {
		parts := strings.Split(strings.TrimSuffix(p, "/tcp"), ":")
		if len(parts) != 3 {
			t.Errorf("%s: port %q: write ip:host:container (publish on 127.0.0.1 only)", name, p)
			continue
		}
		if parts[0] != "127.0.0.1" {
			t.Errorf("%s: port %q is published on %s, want 127.0.0.1", name, p, parts[0])
		}
		h, err1 := strconv.Atoi(parts[1])
		c, err2 := strconv.Atoi(parts[2])
		if err1 != nil || err2 != nil {
			t.Errorf("%s: port %q is not numeric", name, p)
			continue
		}
		out[h] = c
	}
	return out
}

func port(t *testing.T, hostport string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(hostport)
	if err != nil {
		t.Fatalf("%q: %v", hostport, err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

func urlPort(t *testing.T, raw string) (host string, p int) {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("%q: %v", raw, err)
	}
	n, _ := strconv.Atoi(u.Port())
	return u.Hostname(), n
}

func TestComposeParsesAndReferencesExist(t *testing.T) {
	c := load(t)
	for _, want := range []string{"kafka", "registry", "jaeger", "prometheus", "grafana", "demo"} {
		if c.Services[want] == nil {
			t.Errorf("service %s is missing", want)
		}
	}
	for name, s := range c.Services {
		if s.Image == "" && s.Build == nil {
			t.Errorf("%s: neither image nor build", name)
		}
		if s.Image != "" && s.Build == nil && (!strings.Contains(s.Image, ":") || strings.HasSuffix(s.Image, ":latest")) {
			t.Errorf("%s: image %q: pin a version tag", name, s.Image)
		}
		if s.Build != nil {
			ctx := filepath.Join(root(), s.Build.Context)
			if st, err := os.Stat(ctx); err != nil || !st.IsDir() {
				t.Errorf("%s: build context %s is not a directory", name, s.Build.Context)
			}
			df := s.Build.Dockerfile
			if df == "" {
				df = "Dockerfile"
			}
			if _, err := os.Stat(filepath.Join(ctx, df)); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
		for _, b := range binds(s) {
			if strings.HasPrefix(b.src, ".") || strings.HasPrefix(b.src, "/") {
				if _, err := os.Stat(filepath.Join(root(), b.src)); err != nil {
					t.Errorf("%s: bind mount source %s does not exist", name, b.src)
				}
			} else if _, ok := c.Volumes[b.src]; !ok {
				t.Errorf("%s: named volume %s is not declared under volumes:", name, b.src)
			}
		}
		if s.Scale != nil || s.Deploy["replicas"] != nil {
			t.Errorf("%s: scale/deploy.replicas would clone one replica id; declare each replica as its own service", name)
		}
	}
	if got := c.Services["kafka"].Image; got != testkit.KafkaImage {
		t.Errorf("kafka image %s, want %s (the broker the tests use, internal/testkit.KafkaImage)", got, testkit.KafkaImage)
	}
	if img := c.Services["jaeger"].Image; !strings.HasPrefix(img, "jaegertracing/jaeger:2.") {
		t.Errorf("jaeger image %s, want jaegertracing/jaeger:2.x (v2 all-in-one)", img)
	}

	// every config the replicas and the demo are pointed at is in the tree
	for name, s := range c.Services {
		if s.Build == nil {
			continue
		}
		if cfg := flag(s.Command, "--config"); cfg != "" {
			hp := hostPath(s, cfg)
			if hp == "" {
				t.Errorf("%s: --config %s is not bind-mounted from the repository", name, cfg)
			} else if _, err := config.Load(hp, environ(s)); err != nil {
				t.Errorf("%s: --config %s (%s): %v", name, cfg, hp, err)
			}
		}
	}
}

// environ is s's environment as KEY=VALUE.
func environ(s *service) []string {
	var out []string
	for k, v := range s.Environment {
		out = append(out, k+"="+v)
	}
	slices.Sort(out)
	return out
}

func TestComposePortsAreOrdoDefaults(t *testing.T) {
	c := load(t)
	demo, err := config.Load(filepath.Join(root(), config.DefaultPath), nil)
	if err != nil {
		t.Fatal(err)
	}
	kafkaPort := port(t, demo.Kafka.Brokers[0])
	_, registryPort := urlPort(t, demo.Registry.URL)
	adminPort := port(t, config.Defaults().Admin.Listen)
	if kafkaPort != 9092 || registryPort != 8081 || adminPort != 9464 {
		t.Fatalf("ordo's defaults changed (kafka %d, registry %d, admin %d): update docker-compose.yml and this test", kafkaPort, registryPort, adminPort)
	}

	// kafka: containers use kafka:9092, the host 127.0.0.1:9092
	k := c.Services["kafka"]
	adv := k.Environment["KAFKA_ADVERTISED_LISTENERS"]
	if !strings.Contains(adv, fmt.Sprintf("//kafka:%d", kafkaPort)) || !strings.Contains(adv, fmt.Sprintf("//127.0.0.1:%d", kafkaPort)) {
		t.Errorf("kafka advertises %q, want kafka:%d (containers) and 127.0.0.1:%d (host)", adv, kafkaPort, kafkaPort)
	}
	kp := published(t, "kafka", k)
	if _, ok := kp[kafkaPort]; !ok {
		t.Errorf("kafka does not publish host port %d", kafkaPort)
	} else {
		// the host port must land on the listener advertised as 127.0.0.1
		re := regexp.MustCompile(`(\w+)://[^,]*:` + strconv.Itoa(kp[kafkaPort]) + `\b`)
		m := re.FindStringSubmatch(k.Environment["KAFKA_LISTENERS"])
		if m == nil || !strings.Contains(adv, m[1]+"://127.0.0.1:") {
			t.Errorf("host port %d -> container %d: that listener must be advertised as 127.0.0.1 (listeners %q)", kafkaPort, kp[kafkaPort], k.Environment["KAFKA_LISTENERS"])
		}
	}
	if k.Healthcheck == nil {
		t.Error("kafka has no healthcheck (the replicas wait for service_healthy)")
	}

	// registry on 8081, inside and out
	r := c.Services["registry"]
	if got := flag(r.Command, "--addr"); port(t, got) != registryPort {
		t.Errorf("registry --addr %s, want port %d", got, registryPort)
	}
	if published(t, "registry", r)[registryPort] != registryPort {
		t.Errorf("registry must publish %d:%d", registryPort, registryPort)
	}

	// jaeger: OTLP gRPC/HTTP and the UI
	jp := published(t, "jaeger", c.Services["jaeger"])
	for _, p := range []int{4317, 4318, 16686} {
		if jp[p] != p {
			t.Errorf("jaeger must publish %d:%d", p, p)
		}
	}

	// ordo replicas and the demo: where they connect to
	reps := replicas(c)
	hostAdmin := map[int]string{}
	for _, name := range append(slices.Clone(reps), "demo") {
		s := c.Services[name]
		if s == nil {
			continue
		}
		env := s.Environment
		if got := env["ORDO_KAFKA_BROKERS"]; got != fmt.Sprintf("kafka:%d", kafkaPort) {
			t.Errorf("%s: ORDO_KAFKA_BROKERS=%q, want kafka:%d", name, got, kafkaPort)
		}
		if h, p := urlPort(t, env["ORDO_REGISTRY_URL"]); h != "registry" || p != registryPort {
			t.Errorf("%s: ORDO_REGISTRY_URL=%q, want http://registry:%d", name, env["ORDO_REGISTRY_URL"], registryPort)
		}
		if ep := env["OTEL_EXPORTER_OTLP_ENDPOINT"]; ep != "" {
			h, p := urlPort(t, ep)
			proto := env["OTEL_EXPORTER_OTLP_PROTOCOL"]
			if h != "jaeger" || (p == 4317) != (proto == "grpc") || (p == 4318) != (proto == "" || proto == "http/protobuf") {
				t.Errorf("%s: OTLP endpoint %s with protocol %q: 4317 needs grpc, 4318 http/protobuf (ordo's default)", name, ep, proto)
			}
		}
		if name == "demo" {
			continue
		}
		if got := env["ORDO_ADMIN_LISTEN"]; got != fmt.Sprintf("0.0.0.0:%d", adminPort) {
			t.Errorf("%s: ORDO_ADMIN_LISTEN=%q, want 0.0.0.0:%d (reachable by prometheus)", name, got, adminPort)
		}
		if env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "" {
			t.Errorf("%s: no OTEL_EXPORTER_OTLP_ENDPOINT: tracing would be off", name)
		}
		for h, ct := range published(t, name, s) {
			if ct != adminPort {
				t.Errorf("%s publishes container port %d, want only admin %d", name, ct, adminPort)
			}
			if other, dup := hostAdmin[h]; dup {
				t.Errorf("%s and %s both publish host port %d", name, other, h)
			}
			hostAdmin[h] = name
		}
	}
	if hostAdmin[adminPort] == "" {
		t.Errorf("no replica publishes the default admin port %d on the host", adminPort)
	}
}

func TestComposeReplicasHaveDistinctStableTransactionalIDs(t *testing.T) {
	c := load(t)
	reps := replicas(c)
	if len(reps) != 3 {
		t.Fatalf("ordo replicas %v, want 3", reps)
	}
	groups := map[string]bool{}
	txnIDs := map[string]string{}
	for _, name := range reps {
		s := c.Services[name]
		rid := s.Environment["ORDO_REPLICA_ID"]
		switch {
		case rid == "":
			t.Errorf("%s: no ORDO_REPLICA_ID: the replica id would be the container hostname", name)
		case strings.Contains(rid, "$"):
			t.Errorf("%s: ORDO_REPLICA_ID=%q is interpolated; it must be a literal to be stable across restarts", name, rid)
		}
		if s.Hostname != "" && s.Hostname != rid {
			t.Errorf("%s: hostname %q differs from ORDO_REPLICA_ID %q", name, s.Hostname, rid)
		}
		if !slices.Contains(s.Command, "--create-topics") {
			t.Errorf("%s: command %v lacks --create-topics", name, s.Command)
		}
		hp := hostPath(s, flag(s.Command, "--config"))
		if hp == "" {
			t.Fatalf("%s: --config is not bind-mounted from the repository", name)
		}
		// ordo's own config loading decides the group and transactional id
		cfg, err := config.Load(hp, environ(s))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		groups[cfg.Kafka.Group] = true
		tid := cfg.TransactionalID()
		if other, dup := txnIDs[tid]; dup {
			t.Errorf("%s and %s share transactional id %s", name, other, tid)
		}
		txnIDs[tid] = name
		t.Logf("%s: group %s, transactional id %s", name, cfg.Kafka.Group, tid)
	}
	if len(groups) != 1 {
		t.Errorf("replicas are in groups %v, want one", groups)
	}

	// prometheus scrapes exactly the replicas' admin endpoints
	prom := c.Services["prometheus"]
	promFile := hostPath(prom, "/etc/prometheus/prometheus.yml")
	data, err := os.ReadFile(promFile)
	if err != nil {
		t.Fatal(err)
	}
	var pc struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(data, &pc); err != nil {
		t.Fatalf("%s: %v", promFile, err)
	}
	var targets []string
	for _, sc := range pc.ScrapeConfigs {
		if sc.JobName == "ordo" {
			for _, st := range sc.StaticConfigs {
				targets = append(targets, st.Targets...)
			}
		}
	}
	slices.Sort(targets)
	var want []string
	for _, name := range reps {
		want = append(want, fmt.Sprintf("%s:%d", name, port(t, c.Services[name].Environment["ORDO_ADMIN_LISTEN"])))
	}
	if !slices.Equal(targets, want) {
		t.Errorf("prometheus job ordo scrapes %v, want %v", targets, want)
	}
	for _, rf := range pc.RuleFiles {
		if hp := hostPath(prom, rf); hp == "" {
			t.Errorf("prometheus rule file %s is not mounted", rf)
		} else if _, err := os.Stat(hp); err != nil {
			t.Errorf("prometheus rule file %s: %v", rf, err)
		}
	}
}

func TestGrafanaProvisioning(t *testing.T) {
	c := load(t)
	g := c.Services["grafana"]
	ds, err := os.ReadFile(hostPath(g, "/etc/grafana/provisioning/datasources/ordo.yml"))
	if err != nil {
		t.Fatalf("datasource provisioning: %v", err)
	}
	var dsf struct {
		Datasources []struct {
			Type, URL string
		} `yaml:"datasources"`
	}
	if err := yaml.Unmarshal(ds, &dsf); err != nil || len(dsf.Datasources) != 1 {
		t.Fatalf("datasources: %v %+v", err, dsf)
	}
	if h, p := urlPort(t, dsf.Datasources[0].URL); h != "prometheus" || published(t, "prometheus", c.Services["prometheus"])[p] != p {
		t.Errorf("grafana datasource %s does not point at the prometheus service", dsf.Datasources[0].URL)
	}
	prov, err := os.ReadFile(hostPath(g, "/etc/grafana/provisioning/dashboards/ordo.yml"))
	if err != nil {
		t.Fatalf("dashboard provisioning: %v", err)
	}
	var pf struct {
		Providers []struct {
			Options struct{ Path string } `yaml:"options"`
		} `yaml:"providers"`
	}
	if err := yaml.Unmarshal(prov, &pf); err != nil || len(pf.Providers) != 1 {
		t.Fatalf("dashboard providers: %v %+v", err, pf)
	}
	dash := hostPath(g, pf.Providers[0].Options.Path+"/ordo-dashboard.json")
	if dash != filepath.Join(root(), "deploy", "grafana", "ordo-dashboard.json") {
		t.Errorf("the dashboard provider path %s does not hold deploy/grafana/ordo-dashboard.json (got %q)", pf.Providers[0].Options.Path, dash)
	}
}

func TestPrometheusConfigIsValid(t *testing.T) {
	promtool := os.Getenv("PROMTOOL_BIN")
	if promtool == "" {
		promtool, _ = exec.LookPath("promtool")
	}
	if promtool == "" {
		t.Skip("promtool not installed (test/observability/setup.sh installs it)")
	}
	// promtool resolves rule_files on this machine: point them at the repo.
	c := load(t)
	prom := c.Services["prometheus"]
	data, err := os.ReadFile(hostPath(prom, "/etc/prometheus/prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	for _, b := range binds(prom) {
		if strings.HasPrefix(b.dst, "/etc/prometheus/rules/") {
			text = strings.ReplaceAll(text, b.dst, filepath.Join(root(), b.src))
		}
	}
	file := filepath.Join(t.TempDir(), "prometheus.yml")
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(promtool, "check", "config", file).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check config: %v\n%s", err, out)
	}
}

// dockerfile is the Dockerfile as logical lines (continuations joined).
func dockerfile(t *testing.T) []string {
	t.Helper()
	f, err := os.Open(filepath.Join(root(), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	var cur strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(l, "#") || (l == "" && cur.Len() == 0) {
			continue
		}
		if s, ok := strings.CutSuffix(l, "\\"); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(l)
		lines = append(lines, cur.String())
		cur.Reset()
	}
	return lines
}

func TestDockerfile(t *testing.T) {
	lines := dockerfile(t)
	var build string
	var final []string // instructions of the last stage
	for _, l := range lines {
		if strings.HasPrefix(strings.ToUpper(l), "FROM ") {
			final = nil
		}
		final = append(final, l)
		if strings.Contains(l, "go build") {
			build = l
		}
	}
	if build == "" {
		t.Fatal("Dockerfile: no go build")
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", `-s -w`, "-X github.com/ordo-dev/ordo/internal/app.Version=${VERSION}", "./cmd/ordo"} {
		if !strings.Contains(build, want) {
			t.Errorf("Dockerfile go build lacks %q: %s", want, build)
		}
	}
	app, err := os.ReadFile(filepath.Join(root(), "internal", "app", "app.go"))
	if err != nil || !regexp.MustCompile(`(?m)^var Version = `).Match(app) {
		t.Errorf("internal/app.Version (the -X target) is gone")
	}

	// the Makefile's build flags are all in the image build too
	mk, err := os.ReadFile(filepath.Join(root(), "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	if m := regexp.MustCompile(`(?m)^build:.*\n\t(.*go build.*)$`).FindSubmatch(mk); m == nil {
		t.Error("Makefile: no build target with go build")
	} else {
		// make's $(VERSION) is the Dockerfile's ${VERSION}
		recipe := regexp.MustCompile(`\$\((\w+)\)`).ReplaceAllString(string(m[1]), "$${$1}")
		for _, f := range strings.Fields(recipe) {
			if (strings.HasPrefix(f, "-") || strings.Contains(f, "=")) && !strings.HasPrefix(f, "-o") && !strings.Contains(build, strings.Trim(f, `"'`)) {
				t.Errorf("Makefile build uses %s, the Dockerfile does not: align them", f)
			}
		}
	}

	var user, from string
	copiesConfig := false
	for _, l := range final {
		fields := strings.Fields(l)
		switch strings.ToUpper(fields[0]) {
		case "FROM":
			from = fields[1]
		case "USER":
			user = fields[1]
		case "COPY":
			if slices.Contains(fields, "examples/orders/") || slices.Contains(fields, "examples/orders") {
				copiesConfig = true
			}
		}
	}
	if !strings.HasPrefix(from, "gcr.io/distroless/static") && from != "scratch" {
		t.Errorf("runtime image %s, want distroless/static or scratch", from)
	}
	name := strings.Split(user, ":")[0]
	if name == "" || name == "root" || name == "0" {
		t.Errorf("runtime stage USER %q: run as non-root", user)
	}
	if !copiesConfig {
		t.Error("runtime stage does not copy examples/orders (the default config)")
	}

	// the build context keeps what the build needs
	ign, err := os.ReadFile(filepath.Join(root(), ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(ign), "\n") {
		p := strings.TrimSpace(l)
		if p == "" || strings.HasPrefix(p, "#") || strings.HasPrefix(p, "!") {
			continue
		}
		for _, need := range []string{"go.mod", "go.sum", "cmd", "schemas", "examples", "examples/orders", "examples/orders/ordo.yaml", "internal"} {
			if ok, _ := filepath.Match(p, need); ok || p == need {
				t.Errorf(".dockerignore %q excludes %s, which the image build needs", p, need)
			}
		}
	}
}
