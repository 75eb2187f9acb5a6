// Package k8s_test checks the Kubernetes manifests under deploy/k8s without a
// cluster: it builds each kustomization in process with kustomize's own
// library (what `kubectl apply -k` runs), decodes every resulting document
// strictly into the Kubernetes API types (an unknown or misspelt field is an
// error), and checks the wiring that exactly-once depends on: the replica id
// comes from the pod name, the ConfigMap holds a config that ordo itself
// accepts, probes hit /livez and /readyz on the admin port, secrets arrive
// only by reference, the budget and the Services select the pods, and KEDA
// never scales past the input partitions.
package k8s_test

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/ordo-dev/ordo/internal/app"
	"github.com/ordo-dev/ordo/internal/config"
	"github.com/ordo-dev/ordo/internal/state"
)

// here is deploy/k8s.
func here() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(file)
}

// overlays are the kustomizations a user applies.
var overlays = []string{"base", "keda"}

// --- KEDA's ScaledObject, mirrored -------------------------------------------
//
// keda.sh/v1alpha1 ScaledObject as defined in github.com/kedacore/keda/v2
// apis/keda/v1alpha1 (scaledobject_types.go, scaletriggers_types.go), spec
// only. Importing KEDA's module would pull in its whole operator; these
// mirrors keep the JSON names, so strict decoding rejects a field KEDA does
// not have. A field KEDA has but that is missing here fails too: add it.

type scaledObject struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              scaledObjectSpec `json:"spec"`
}

type scaledObjectSpec struct {
	ScaleTargetRef        *scaleTarget    `json:"scaleTargetRef"`
	PollingInterval       *int32          `json:"pollingInterval,omitempty"`
	CooldownPeriod        *int32          `json:"cooldownPeriod,omitempty"`
	InitialCooldownPeriod int32           `json:"initialCooldownPeriod,omitempty"`
	IdleReplicaCount      *int32          `json:"idleReplicaCount,omitempty"`
	MinReplicaCount       *int32          `json:"minReplicaCount,omitempty"`
	MaxReplicaCount       *int32          `json:"maxReplicaCount,omitempty"`
	Advanced              *advancedConfig `json:"advanced,omitempty"`
	Triggers              []scaleTrigger  `json:"triggers"`
	Fallback              *scaleFallback  `json:"fallback,omitempty"`
}

type scaleTarget struct {
	Name                   string `json:"name"`
	APIVersion             string `json:"apiVersion,omitempty"`
	Kind                   string `json:"kind,omitempty"`
	EnvSourceContainerName string `json:"envSourceContainerName,omitempty"`
}

type advancedConfig struct {
	HorizontalPodAutoscalerConfig *hpaConfig       `json:"horizontalPodAutoscalerConfig,omitempty"`
	RestoreToOriginalReplicaCount bool             `json:"restoreToOriginalReplicaCount,omitempty"`
	ScalingModifiers              *scalingModifier `json:"scalingModifiers,omitempty"`
}

type scalingModifier struct {
	Formula          string `json:"formula,omitempty"`
	Target           string `json:"target,omitempty"`
	ActivationTarget string `json:"activationTarget,omitempty"`
	MetricType       string `json:"metricType,omitempty"`
}

type hpaConfig struct {
	Behavior *autoscalingv2.HorizontalPodAutoscalerBehavior `json:"behavior,omitempty"`
	Name     string                                         `json:"name,omitempty"`
}

type scaleTrigger struct {
	Type              string            `json:"type"`
	Name              string            `json:"name,omitempty"`
	UseCachedMetrics  bool              `json:"useCachedMetrics,omitempty"`
	Metadata          map[string]string `json:"metadata"`
	AuthenticationRef *struct {
		Name string `json:"name"`
		Kind string `json:"kind,omitempty"`
	} `json:"authenticationRef,omitempty"`
	MetricType string `json:"metricType,omitempty"`
}

type scaleFallback struct {
	FailureThreshold int32 `json:"failureThreshold"`
	Replicas         int32 `json:"replicas"`
}

// kafkaTriggerKeys are the trigger metadata keys of KEDA's `kafka` scaler
// (pkg/scalers/kafka_scaler.go, the keda:"name=..." tags read from trigger
// metadata, plus the *FromEnv forms of those resolved from the target's
// environment). Credentials belong in a TriggerAuthentication, not here.
var kafkaTriggerKeys = []string{
	"bootstrapServers", "bootstrapServersFromEnv", "consumerGroup", "consumerGroupFromEnv", "topic", "topicFromEnv",
	"partitionLimitation", "lagThreshold", "activationLagThreshold", "offsetResetPolicy", "allowIdleConsumers",
	"excludePersistentLag", "scaleToZeroOnInvalidOffset", "limitToPartitionsWithLag",
	"ensureEvenDistributionOfPartitions", "version", "tls", "unsafeSsl", "sasl", "saslTokenProvider", "awsRegion",
}

// --- building and decoding --------------------------------------------------

// bundle is one kustomization's output, decoded.
type bundle struct {
	dir        string
	sts        []*appsv1.StatefulSet
	services   []*corev1.Service
	pdbs       []*policyv1.PodDisruptionBudget
	configMaps []*corev1.ConfigMap
	scaled     []*scaledObject
}

// decodeStrict decodes one manifest into the API type of its kind. Unknown
// fields and unknown kinds are errors.
func decodeStrict(apiVersion, kind string, doc []byte) (any, error) {
	var obj any
	switch apiVersion + " " + kind {
	case "apps/v1 StatefulSet":
		obj = &appsv1.StatefulSet{}
	case "v1 Service":
		obj = &corev1.Service{}
	case "v1 ConfigMap":
		obj = &corev1.ConfigMap{}
	case "policy/v1 PodDisruptionBudget":
		obj = &policyv1.PodDisruptionBudget{}
	case "keda.sh/v1alpha1 ScaledObject":
		obj = &scaledObject{}
	default:
		return nil, fmt.Errorf("unexpected %s %s: add its API type to decodeStrict", apiVersion, kind)
	}
	// As the API server decodes with strict field validation: duplicate keys
	// and unknown fields are errors, and field names are case-sensitive
	// (encoding/json, and so yaml.UnmarshalStrict, would take "targetport"
	// for "targetPort").
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", kind, err)
	}
	strict, err := kjson.UnmarshalStrict(js, obj, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", kind, err)
	}
	if err := errors.Join(strict...); err != nil {
		return nil, fmt.Errorf("%s: %w", kind, err)
	}
	return obj, nil
}

// build runs kustomize on deploy/k8s/<overlay> with kubectl's defaults
// (files only from inside the kustomization) and decodes the result.
func build(t *testing.T, overlay string) *bundle {
	t.Helper()
	dir := filepath.Join(here(), overlay)
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", overlay, err)
	}
	b := &bundle{dir: overlay}
	for _, r := range m.Resources() {
		doc, err := r.AsYAML()
		if err != nil {
			t.Fatalf("%s: %v", overlay, err)
		}
		obj, err := decodeStrict(r.GetApiVersion(), r.GetKind(), doc)
		if err != nil {
			t.Fatalf("%s: %s/%s does not decode strictly: %v\n%s", overlay, r.GetKind(), r.GetName(), err, doc)
		}
		switch o := obj.(type) {
		case *appsv1.StatefulSet:
			b.sts = append(b.sts, o)
		case *corev1.Service:
			b.services = append(b.services, o)
		case *corev1.ConfigMap:
			b.configMaps = append(b.configMaps, o)
		case *policyv1.PodDisruptionBudget:
			b.pdbs = append(b.pdbs, o)
		case *scaledObject:
			b.scaled = append(b.scaled, o)
		}
	}
	return b
}

// statefulSet is the one StatefulSet and its ordo container.
func (b *bundle) statefulSet(t *testing.T) (*appsv1.StatefulSet, *corev1.Container) {
	t.Helper()
	if len(b.sts) != 1 {
		t.Fatalf("%s: %d StatefulSets, want 1", b.dir, len(b.sts))
	}
	s := b.sts[0]
	for i := range s.Spec.Template.Spec.Containers {
		if c := &s.Spec.Template.Spec.Containers[i]; c.Name == "ordo" {
			return s, c
		}
	}
	t.Fatalf("%s: StatefulSet %s has no container named ordo", b.dir, s.Name)
	return nil, nil
}

// firstPod is the name of the StatefulSet's pod with ordinal 0.
func (b *bundle) firstPod(t *testing.T) string {
	t.Helper()
	s, _ := b.statefulSet(t)
	return s.Name + "-0"
}

// flagValue returns the value of --name in args.
func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		if a == name && i+1 < len(args) {
			return args[i+1], true
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v, true
		}
	}
	return "", false
}

// configDir writes the ConfigMap mounted at the directory of the container's
// --config into a temporary directory, as the kubelet would, and returns the
// config file's path there.
func (b *bundle) configDir(t *testing.T) string {
	t.Helper()
	s, c := b.statefulSet(t)
	if len(c.Args) == 0 || c.Args[0] != "run" {
		t.Fatalf("%s: container args %q do not start `ordo run`", b.dir, c.Args)
	}
	path, ok := flagValue(c.Args, "--config")
	if !ok {
		t.Fatalf("%s: container args %q have no --config", b.dir, c.Args)
	}
	var volName string
	for _, m := range c.VolumeMounts {
		if m.MountPath == filepath.Dir(path) && m.SubPath == "" {
			volName = m.Name
		}
	}
	if volName == "" {
		t.Fatalf("%s: nothing is mounted at %s, the directory of --config %s", b.dir, filepath.Dir(path), path)
	}
	var cmName string
	for _, v := range s.Spec.Template.Spec.Volumes {
		if v.Name == volName && v.ConfigMap != nil {
			cmName = v.ConfigMap.Name
		}
	}
	if cmName == "" {
		t.Fatalf("%s: volume %s is not a ConfigMap volume", b.dir, volName)
	}
	for _, cm := range b.configMaps {
		if cm.Name != cmName {
			continue
		}
		dir := t.TempDir()
		for k, v := range cm.Data {
			if err := os.WriteFile(filepath.Join(dir, k), []byte(v), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if _, ok := cm.Data[filepath.Base(path)]; !ok {
			t.Fatalf("%s: ConfigMap %s has no key %s (keys: %v)", b.dir, cmName, filepath.Base(path), keys(cm.Data))
		}
		return filepath.Join(dir, filepath.Base(path))
	}
	t.Fatalf("%s: the StatefulSet mounts ConfigMap %q, which the build does not contain (a generator name not rewritten?)", b.dir, cmName)
	return ""
}

// show prints an optional number.
func show[T int32 | int64](p *T) string {
	if p == nil {
		return "unset"
	}
	return fmt.Sprint(*p)
}

func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// podEnv is the container's environment as the kubelet gives it to the pod
// named podName. Secrets are left out (they are optional and absent in a
// fresh cluster); anything this function cannot resolve fails the test.
func podEnv(t *testing.T, c *corev1.Container, podName string) []string {
	t.Helper()
	if len(c.EnvFrom) > 0 {
		t.Fatalf("container %s uses envFrom; list each variable so every secret is visible as a secretKeyRef", c.Name)
	}
	var env []string
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			if strings.Contains(e.Value, "$(") {
				t.Fatalf("env %s=%q: $(VAR) expansion is not modelled by this test", e.Name, e.Value)
			}
			env = append(env, e.Name+"="+e.Value)
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name":
			env = append(env, e.Name+"="+podName)
		case e.ValueFrom.SecretKeyRef != nil:
		default:
			t.Fatalf("env %s: valueFrom %+v is not modelled by this test", e.Name, e.ValueFrom)
		}
	}
	return env
}

// loadConfig parses the mounted config with the pod's environment, using
// ordo's own loader.
func loadConfig(t *testing.T, path string, env []string) *config.Config {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(path, data, env)
	if err != nil {
		t.Fatalf("ordo rejects the ConfigMap's config with the pod's environment: %v", err)
	}
	return cfg
}

// inputPartitions is the total partition count of the config's inputs, from
// its topics: block.
func inputPartitions(t *testing.T, cfg *config.Config) int {
	t.Helper()
	total := 0
	for _, in := range cfg.Inputs {
		op, ok := cfg.Topics[in]
		if !ok || op.Partitions <= 0 {
			t.Fatalf("input %s has no partition count under topics: in the config; KEDA's cap is checked against it", in)
		}
		total += int(op.Partitions)
	}
	return total
}

// containerPort resolves a probe or Service port (a number or a name).
func containerPort(t *testing.T, c *corev1.Container, p intstr.IntOrString) int32 {
	t.Helper()
	if p.Type == intstr.Int {
		return p.IntVal
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort
		}
	}
	t.Fatalf("container %s has no port named %q", c.Name, p.StrVal)
	return 0
}

// --- tests ------------------------------------------------------------------

// Every document of every overlay decodes strictly into its API type (build
// fails the test otherwise), the expected objects are there, and nothing
// else is.
func TestManifestsDecodeStrictly(t *testing.T) {
	for _, o := range overlays {
		t.Run(o, func(t *testing.T) {
			b := build(t, o)
			b.statefulSet(t)
			if len(b.services) != 1 || len(b.pdbs) != 1 || len(b.configMaps) != 1 {
				t.Errorf("got %d Services, %d PodDisruptionBudgets, %d ConfigMaps; want 1 each", len(b.services), len(b.pdbs), len(b.configMaps))
			}
			wantScaled := 0
			if o == "keda" {
				wantScaled = 1
			}
			if len(b.scaled) != wantScaled {
				t.Errorf("got %d ScaledObjects, want %d", len(b.scaled), wantScaled)
			}
		})
	}
}

// The strict decoder really rejects what the API server would not know: a
// misspelt field in a StatefulSet or in a ScaledObject.
func TestStrictDecodingRejectsUnknownFields(t *testing.T) {
	for _, c := range []struct{ apiVersion, kind, doc, want string }{
		{"apps/v1", "StatefulSet", "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: x}\nspec:\n  replica: 3\n", `unknown field "spec.replica"`},
		{"v1", "Service", "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  ports: [{port: 1, targetport: admin}]\n", `unknown field "spec.ports[0].targetport"`},
		{"keda.sh/v1alpha1", "ScaledObject", "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: x}\nspec:\n  scaleTargetRef: {name: ordo}\n  maxReplicas: 3\n  triggers: []\n", `unknown field "spec.maxReplicas"`},
		{"v1", "Secret", "apiVersion: v1\nkind: Secret\nmetadata: {name: x}\n", "unexpected v1 Secret"},
	} {
		_, err := decodeStrict(c.apiVersion, c.kind, []byte(c.doc))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want one containing %q", c.kind, err, c.want)
		}
	}
}

// Each pod's replica id is its name (ordo-0, ordo-1, ...), so the
// transactional ids, and with static membership the group instance ids, are
// distinct across replicas and the same for every incarnation of a pod.
func TestReplicaIDIsThePodName(t *testing.T) {
	for _, o := range overlays {
		t.Run(o, func(t *testing.T) {
			b := build(t, o)
			s, c := b.statefulSet(t)
			var fromName bool
			for _, e := range c.Env {
				if e.Name == "ORDO_KAFKA_REPLICA_ID" {
					t.Errorf("ORDO_KAFKA_REPLICA_ID is set; it would override ORDO_REPLICA_ID (the pod name)")
				}
				if e.Name == "ORDO_REPLICA_ID" {
					fromName = e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name"
				}
			}
			if !fromName {
				t.Errorf("ORDO_REPLICA_ID must come from the downward API (fieldRef metadata.name)")
			}
			// ordo falls back to the hostname; in a StatefulSet that is the
			// pod name unless the template overrides it.
			if ps := s.Spec.Template.Spec; ps.Hostname != "" || (ps.SetHostnameAsFQDN != nil && *ps.SetHostnameAsFQDN) {
				t.Errorf("the pod template sets hostname %q / setHostnameAsFQDN; the hostname must stay the pod name", ps.Hostname)
			}
			path := b.configDir(t)
			n := 3
			if s.Spec.Replicas != nil {
				n = max(n, int(*s.Spec.Replicas))
			}
			for _, so := range b.scaled {
				if so.Spec.MaxReplicaCount != nil {
					n = max(n, int(*so.Spec.MaxReplicaCount))
				}
			}
			seen := map[string]string{}
			for i := range n {
				pod := fmt.Sprintf("%s-%d", s.Name, i)
				cfg := loadConfig(t, path, podEnv(t, c, pod))
				if got := cfg.ReplicaID(); got != pod {
					t.Errorf("pod %s: replica id %q, want the pod name", pod, got)
				}
				tid := cfg.TransactionalID()
				if want := cfg.Kafka.TransactionalIDPrefix + "-" + pod; tid != want {
					t.Errorf("pod %s: transactional id %q, want %q", pod, tid, want)
				}
				if other, dup := seen[tid]; dup {
					t.Errorf("pods %s and %s share transactional id %s", other, pod, tid)
				}
				seen[tid] = pod
				if !cfg.StaticMembership() { // on: ORDO_REPLICA_ID is set explicitly
					t.Errorf("kafka.static_membership is off: every rolling restart would rebalance; docs/kubernetes.md assumes it on")
				}
			}
		})
	}
}

// The ConfigMap's config passes `ordo config validate` (YAML, values,
// processors with their files, CEL type checks) in the pod's environment,
// run in process exactly as the container would run it.
func TestConfigMapPassesOrdoConfigValidate(t *testing.T) {
	b := build(t, "base")
	_, c := b.statefulSet(t)
	path := b.configDir(t)
	// Ambient ORDO_* variables of the machine running the test must not
	// leak into the pod's view.
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "ORDO_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
	for _, kv := range podEnv(t, c, b.firstPod(t)) {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	var out, errOut bytes.Buffer
	if code := app.Main([]string{"config", "validate", path}, app.WithOutput(&out, &errOut)); code != 0 {
		t.Fatalf("ordo config validate exit %d: %s%s", code, out.String(), errOut.String())
	}
	cfg := loadConfig(t, path, podEnv(t, c, b.firstPod(t)))
	if want := "transactional id " + cfg.Kafka.TransactionalIDPrefix + "-" + b.firstPod(t); !strings.Contains(out.String(), want) {
		t.Errorf("ordo config validate: %q; want %q", out.String(), want)
	}
	// The ConfigMap comes from a generator whose output name carries a
	// content hash, so a config change rolls the pods (docs/kubernetes.md
	// relies on it).
	data, err := os.ReadFile(filepath.Join(here(), "base", "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var kust struct {
		ConfigMapGenerator []struct {
			Name string `json:"name"`
		} `json:"configMapGenerator"`
	}
	if err := yaml.Unmarshal(data, &kust); err != nil {
		t.Fatal(err)
	}
	hashed := false
	for _, g := range kust.ConfigMapGenerator {
		rest, ok := strings.CutPrefix(b.configMaps[0].Name, g.Name+"-")
		hashed = hashed || (ok && regexp.MustCompile(`^[a-z0-9]{6,}$`).MatchString(rest))
	}
	if !hashed {
		t.Errorf("ConfigMap %q is not a generator's name plus a content hash (generators: %+v)", b.configMaps[0].Name, kust.ConfigMapGenerator)
	}
}

// Probes: liveness and startup on /livez, readiness on /readyz, all on the
// container port that ordo's effective admin.listen binds, on all interfaces.
func TestProbesHitTheAdminPort(t *testing.T) {
	for _, o := range overlays {
		t.Run(o, func(t *testing.T) {
			b := build(t, o)
			_, c := b.statefulSet(t)
			cfg := loadConfig(t, b.configDir(t), podEnv(t, c, b.firstPod(t)))
			host, portStr, err := net.SplitHostPort(cfg.Admin.Listen)
			if err != nil {
				t.Fatalf("admin.listen %q: %v", cfg.Admin.Listen, err)
			}
			if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
				t.Errorf("admin.listen %q binds %s only; the kubelet and Prometheus reach the pod IP (set ORDO_ADMIN_LISTEN=0.0.0.0:%s)", cfg.Admin.Listen, host, portStr)
			}
			port, _ := strconv.Atoi(portStr)
			for _, p := range []struct {
				name  string
				probe *corev1.Probe
				path  string
			}{
				{"livenessProbe", c.LivenessProbe, "/livez"},
				{"readinessProbe", c.ReadinessProbe, "/readyz"},
				{"startupProbe", c.StartupProbe, "/livez"},
			} {
				if p.probe == nil || p.probe.HTTPGet == nil {
					t.Errorf("%s: missing or not httpGet", p.name)
					continue
				}
				if p.probe.HTTPGet.Path != p.path {
					// /readyz as liveness would restart every replica in a
					// registry outage; /livez as readiness would hide a stall.
					t.Errorf("%s: path %s, want %s", p.name, p.probe.HTTPGet.Path, p.path)
				}
				if got := containerPort(t, c, p.probe.HTTPGet.Port); int(got) != port {
					t.Errorf("%s: port %d, but ordo's admin server listens on %d", p.name, got, port)
				}
			}
		})
	}
}

// SIGTERM may take shutdown_timeout to end the open transaction and as long
// again to close the session, then up to 5s to flush spans and 2s to stop
// the admin server (internal/app); the grace period must cover all of it, or
// the kubelet's SIGKILL turns every rolling restart into a crash recovery.
func TestGracePeriodCoversShutdown(t *testing.T) {
	b := build(t, "base")
	s, c := b.statefulSet(t)
	cfg := loadConfig(t, b.configDir(t), podEnv(t, c, b.firstPod(t)))
	need := 2*cfg.Processing.ShutdownTimeout.D() + 7*time.Second
	g := s.Spec.Template.Spec.TerminationGracePeriodSeconds
	if g == nil || time.Duration(*g)*time.Second < need {
		t.Errorf("terminationGracePeriodSeconds %s; want at least %v (2 × processing.shutdown_timeout %v + 7s)", show(g), need, cfg.Processing.ShutdownTimeout.D())
	}
}

// The memory limit leaves room above ordo's Go soft limit
// (processing.memory_limit_mib); at the soft limit a 10M-event backlog
// peaked 13% above it in RSS (bench/findings.md), so 25% is the floor.
func TestMemoryLimitAboveSoftLimit(t *testing.T) {
	b := build(t, "base")
	_, c := b.statefulSet(t)
	cfg := loadConfig(t, b.configDir(t), podEnv(t, c, b.firstPod(t)))
	lim, ok := c.Resources.Limits[corev1.ResourceMemory]
	if cfg.Processing.MemoryLimitMiB == 0 {
		t.Skip("processing.memory_limit_mib is 0: no soft limit to compare with")
	}
	// The image is built without cgo: with a state: block, ordo raises its
	// soft limit by the store's cache and memtables (state.GoHeapBytes).
	soft := int64(cfg.Processing.MemoryLimitMiB) << 20
	if cfg.State != nil {
		st := cfg.StateSettings()
		soft += state.BufferBytes(int64(st.CacheMiB)<<20, st.Partitions)
	}
	if want := soft * 5 / 4; !ok || lim.Value() < want {
		t.Errorf("memory limit %v; want at least %d MiB (1.25 × the soft limit %d MiB: memory_limit_mib %d plus the state store's buffers)", lim.String(), want>>20, soft>>20, cfg.Processing.MemoryLimitMiB)
	}
}

var secretName = regexp.MustCompile(`(?i)PASSWORD|TOKEN|SECRET|CREDENTIAL|PRIVATE_KEY`)

// Secrets reach the pod only as secretKeyRef env entries: no Secret in the
// manifests, no literal secret values, no credentials in the ConfigMap, and
// every ORDO_* variable is one ordo reads (a typo would silently do nothing).
func TestSecretsOnlyByReference(t *testing.T) {
	known := config.EnvVars()
	known["ORDO_REPLICA_ID"] = "kafka.replica_id"
	for _, o := range overlays {
		t.Run(o, func(t *testing.T) {
			b := build(t, o)
			_, c := b.statefulSet(t)
			refs := 0
			for _, e := range c.Env {
				if strings.HasPrefix(e.Name, "ORDO_") && known[e.Name] == "" {
					t.Errorf("env %s is not an ordo override (see `ordo config env`)", e.Name)
				}
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
					refs++
					continue
				}
				if secretName.MatchString(e.Name) {
					t.Errorf("env %s looks like a secret but is not a secretKeyRef", e.Name)
				}
			}
			if refs == 0 {
				t.Errorf("no secretKeyRef at all: where does kafka.sasl.password come from?")
			}
			cfg := loadConfig(t, b.configDir(t), podEnv(t, c, b.firstPod(t)))
			if cfg.Kafka.SASL.Password != "" {
				t.Errorf("the ConfigMap holds kafka.sasl.password; use the Secret (ORDO_KAFKA_SASL_PASSWORD)")
			}
			if u, err := url.Parse(cfg.Registry.URL); err != nil || u.User != nil {
				t.Errorf("registry.url %q carries credentials (or does not parse: %v)", cfg.Registry.URL, err)
			}
			for _, cm := range b.configMaps {
				for k, v := range cm.Data {
					if regexp.MustCompile(`(?mi)^\s*(password|token|bearer_token)\s*:\s*\S`).MatchString(v) {
						t.Errorf("ConfigMap %s key %s holds a literal credential", cm.Name, k)
					}
				}
			}
		})
	}
}

// The PodDisruptionBudget and the metrics Service select exactly the
// StatefulSet's pods; the Service is the StatefulSet's headless governing
// Service and keeps unready pods (whose metrics matter most) in its
// endpoints; rolling updates and evictions take one pod at a time.
func TestSelectorsAndRollout(t *testing.T) {
	for _, o := range overlays {
		t.Run(o, func(t *testing.T) {
			b := build(t, o)
			s, c := b.statefulSet(t)
			podLabels := labels.Set(s.Spec.Template.Labels)
			sel, err := metav1.LabelSelectorAsSelector(s.Spec.Selector)
			if err != nil || !sel.Matches(podLabels) {
				t.Fatalf("the StatefulSet's selector does not match its own pods (%v)", err)
			}
			for _, pdb := range b.pdbs {
				ps, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
				if err != nil || ps.Empty() || !ps.Matches(podLabels) {
					t.Errorf("PDB %s selector %v does not select the pods %v (%v)", pdb.Name, pdb.Spec.Selector, podLabels, err)
				}
				if mu := pdb.Spec.MaxUnavailable; mu == nil || *mu != intstr.FromInt32(1) || pdb.Spec.MinAvailable != nil {
					t.Errorf("PDB %s: want maxUnavailable 1 and no minAvailable", pdb.Name)
				}
			}
			var governing *corev1.Service
			for _, svc := range b.services {
				if len(svc.Spec.Selector) == 0 || !labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) {
					t.Errorf("Service %s selector %v does not select the pods %v", svc.Name, svc.Spec.Selector, podLabels)
				}
				if svc.Name == s.Spec.ServiceName {
					governing = svc
				}
			}
			if governing == nil {
				t.Fatalf("the StatefulSet's serviceName %q is not among the Services", s.Spec.ServiceName)
			}
			if governing.Spec.ClusterIP != corev1.ClusterIPNone || !governing.Spec.PublishNotReadyAddresses {
				t.Errorf("Service %s: want headless (clusterIP None) with publishNotReadyAddresses", governing.Name)
			}
			var metrics bool
			for _, p := range governing.Spec.Ports {
				if p.Name == "metrics" && containerPort(t, c, p.TargetPort) == containerPort(t, c, intstr.FromString("admin")) {
					metrics = true
				}
			}
			if !metrics {
				t.Errorf("Service %s has no port named metrics targeting the admin port", governing.Name)
			}
			us := s.Spec.UpdateStrategy
			if us.Type != "" && us.Type != appsv1.RollingUpdateStatefulSetStrategyType {
				t.Errorf("updateStrategy %s: want RollingUpdate", us.Type)
			}
			if ru := us.RollingUpdate; ru != nil && ((ru.MaxUnavailable != nil && *ru.MaxUnavailable != intstr.FromInt32(1)) || (ru.Partition != nil && *ru.Partition != 0)) {
				t.Errorf("rollingUpdate %+v: want one pod at a time over all ordinals", ru)
			}
		})
	}
}

// KEDA scales the StatefulSet on the group's lag, between at least one
// replica and at most the input partitions, with scale-downs spaced so that
// a removed static member's partitions are free again before the next one
// goes. The base keeps a fixed count; the KEDA overlay leaves it to the HPA.
func TestKEDAScaledObject(t *testing.T) {
	base := build(t, "base")
	bs, bc := base.statefulSet(t)
	cfg := loadConfig(t, base.configDir(t), podEnv(t, bc, base.firstPod(t)))
	parts := inputPartitions(t, cfg)
	if bs.Spec.Replicas == nil || *bs.Spec.Replicas < 1 || int(*bs.Spec.Replicas) > parts {
		t.Errorf("base replicas %s; want 1..%d (the input partitions)", show(bs.Spec.Replicas), parts)
	}
	if len(base.scaled) != 0 {
		t.Errorf("the base has a ScaledObject; it must apply to clusters without KEDA")
	}

	b := build(t, "keda")
	s, _ := b.statefulSet(t)
	if s.Spec.Replicas != nil {
		t.Errorf("the keda overlay sets spec.replicas %d; every apply would fight the HPA", *s.Spec.Replicas)
	}
	if len(b.scaled) != 1 {
		t.Fatalf("%d ScaledObjects, want 1", len(b.scaled))
	}
	so := b.scaled[0].Spec
	if r := so.ScaleTargetRef; r == nil || r.Name != s.Name || r.Kind != "StatefulSet" || r.APIVersion != "apps/v1" {
		t.Errorf("scaleTargetRef %+v; want apps/v1 StatefulSet %s", r, s.Name)
	}
	if so.MinReplicaCount == nil || *so.MinReplicaCount < 1 {
		t.Errorf("minReplicaCount %s; want at least 1 (ordo does not scale to zero: nothing would commit the lag away)", show(so.MinReplicaCount))
	}
	if so.IdleReplicaCount != nil {
		t.Errorf("idleReplicaCount set: scaling to zero leaves the group without members")
	}
	if so.MaxReplicaCount == nil || int(*so.MaxReplicaCount) > parts {
		t.Errorf("maxReplicaCount %s; want at most %d, the input partitions (more replicas would own nothing)", show(so.MaxReplicaCount), parts)
	} else if so.MinReplicaCount != nil && *so.MinReplicaCount > *so.MaxReplicaCount {
		t.Errorf("minReplicaCount %d > maxReplicaCount %d", *so.MinReplicaCount, *so.MaxReplicaCount)
	}
	if len(so.Triggers) != 1 || so.Triggers[0].Type != "kafka" {
		t.Fatalf("triggers %+v; want one kafka trigger", so.Triggers)
	}
	md := so.Triggers[0].Metadata
	for k := range md {
		if !slices.Contains(kafkaTriggerKeys, k) {
			t.Errorf("kafka trigger metadata key %q is not one KEDA's kafka scaler reads", k)
		}
	}
	if got, want := md["bootstrapServers"], strings.Join(cfg.Kafka.Brokers, ","); got != want {
		t.Errorf("bootstrapServers %q; ordo's kafka.brokers are %q", got, want)
	}
	if got := md["consumerGroup"]; got != cfg.Kafka.Group {
		t.Errorf("consumerGroup %q; ordo's kafka.group is %q", got, cfg.Kafka.Group)
	}
	if tp := md["topic"]; tp != "" && !slices.Contains(cfg.Inputs, tp) {
		t.Errorf("topic %q is not an input", tp)
	}
	if n, err := strconv.ParseInt(md["lagThreshold"], 10, 64); err != nil || n <= 0 {
		t.Errorf("lagThreshold %q; want a positive integer", md["lagThreshold"])
	}
	// consumer/eos.go starts a partition without a committed offset at its
	// beginning (ConsumeResetOffset AtStart): all of it is lag.
	if md["offsetResetPolicy"] != "earliest" {
		t.Errorf("offsetResetPolicy %q; ordo resets to the earliest offset", md["offsetResetPolicy"])
	}
	for _, k := range []string{"allowIdleConsumers", "excludePersistentLag", "scaleToZeroOnInvalidOffset", "limitToPartitionsWithLag", "unsafeSsl"} {
		if v, ok := md[k]; ok {
			if _, err := strconv.ParseBool(v); err != nil {
				t.Errorf("%s %q is not a bool", k, v)
			}
		}
	}
	if v, _ := strconv.ParseBool(md["allowIdleConsumers"]); v {
		t.Errorf("allowIdleConsumers true lets KEDA go past the partitions")
	}
	var down *autoscalingv2.HPAScalingRules
	if a := so.Advanced; a != nil && a.HorizontalPodAutoscalerConfig != nil && a.HorizontalPodAutoscalerConfig.Behavior != nil {
		down = a.HorizontalPodAutoscalerConfig.Behavior.ScaleDown
	}
	if down == nil || len(down.Policies) == 0 {
		t.Fatalf("no scaleDown policies: the HPA default removes many pods at once, each holding its partitions for kafka.session_timeout")
	}
	st := cfg.Kafka.SessionTimeout.D()
	for _, p := range down.Policies {
		if p.Type != autoscalingv2.PodsScalingPolicy || p.Value != 1 || time.Duration(p.PeriodSeconds)*time.Second < st {
			t.Errorf("scaleDown policy %+v; want type Pods, value 1, periodSeconds ≥ kafka.session_timeout (%v)", p, st)
		}
	}
}
