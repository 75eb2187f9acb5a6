package config

import (
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

const minimal = `
kafka:
  brokers: [127.0.0.1:9092]
inputs: [in]
pipeline:
  - type: orchestrate
`

func TestDefaultConfigLoads(t *testing.T) {
	cfg, err := Load(filepath.Join("..", "..", DefaultPath), nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Processing.CommitInterval.D() != 100*time.Millisecond || len(cfg.Inputs) != 3 || len(cfg.Pipeline) == 0 {
		t.Fatalf("unexpected default config: %+v", cfg)
	}
}

func TestErrorsCarryFileLineKeyAndFix(t *testing.T) {
	cases := []struct {
		name, yaml    string
		line          int
		key, msg, fix string
	}{
		{"unknown key with suggestion", "kafka:\n  brokres: [a:1]\n", 2, "kafka.brokres", "unknown key", `did you mean "brokers"`},
		{"bad duration", "kafka:\n  session_timeout: soon\n", 2, "(yaml)", "not a duration", "docs/config.md"},
		{"bad strategy", minimal + "registry:\n  subject_strategy: by_magic\n", 8, "registry.subject_strategy", "unknown strategy", "topic_name"},
		{"dlq is input", minimal + "dead_letter_topic: in\n", 7, "dead_letter_topic", "also an input", "another topic"},
		{"compression", "kafka:\n  producer_compression: brotli\n", 2, "kafka.producer_compression", "unknown codec", "zstd"},
		{"gc target", minimal + "processing:\n  gc_percent: -5\n", 8, "processing.gc_percent", "not a GC target", "400"},
		{"gc off without limit", minimal + "processing:\n  gc_percent: -1\n  memory_limit_mib: 0\n", 8, "processing.gc_percent", "needs a memory limit", "memory_limit_mib"},
		{"broker without port", "kafka:\n  brokers: [localhost]\ninputs: [in]\npipeline: [{type: orchestrate}]\n", 2, "kafka.brokers[0]", "no port", "host:port"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("ordo.yaml", []byte(c.yaml), nil)
			if err == nil {
				t.Fatal("accepted")
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %T %v is not a config error", err, err)
			}
			s := err.Error()
			for _, want := range []string{"ordo.yaml:" + strconv.Itoa(c.line), c.key, c.msg, c.fix} {
				if !strings.Contains(s, want) {
					t.Errorf("%q lacks %q", s, want)
				}
			}
		})
	}
}

func TestTransactionTimeoutMustBeBelowSessionTimeout(t *testing.T) {
	y := "kafka:\n  brokers: [a:1]\n  session_timeout: 10s\n  transaction_timeout: 20s\ninputs: [in]\npipeline: [{type: orchestrate}]\n"
	_, err := Parse("f.yaml", []byte(y), nil)
	if err == nil || !strings.Contains(err.Error(), "f.yaml:4: kafka.transaction_timeout") || !strings.Contains(err.Error(), "fix:") {
		t.Fatalf("got %v", err)
	}
}

func TestEnvOverrides(t *testing.T) {
	cfg, err := Parse("f.yaml", []byte(minimal), []string{
		"ORDO_KAFKA_BROKERS=b1:9092, b2:9092", "ORDO_REPLICA_ID=pod-3", "ORDO_PROCESSING_COMMIT_INTERVAL=250ms",
		"ORDO_KAFKA_GROUP=g2", "ORDO_REGISTRY_AUTO_REGISTER=false", "UNRELATED=1",
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(cfg.Kafka.Brokers, ",") != "b1:9092,b2:9092" || cfg.Kafka.Group != "g2" ||
		cfg.Processing.CommitInterval.D() != 250*time.Millisecond || *cfg.Registry.AutoRegister {
		t.Fatalf("overrides not applied: %+v", cfg)
	}
	if got := cfg.TransactionalID(); got != "ordo-pod-3" {
		t.Errorf("transactional id %q, want ordo-pod-3", got)
	}
	_, err = Parse("f.yaml", []byte(minimal), []string{"ORDO_PROCESSING_BATCH_SIZE=lots"})
	if err == nil || !strings.Contains(err.Error(), "ORDO_PROCESSING_BATCH_SIZE") {
		t.Fatalf("bad env value: %v", err)
	}
}

func TestEnvVarsListsKeys(t *testing.T) {
	vars := EnvVars()
	for name, path := range map[string]string{"ORDO_KAFKA_BROKERS": "kafka.brokers", "ORDO_REGISTRY_URL": "registry.url", "ORDO_DEAD_LETTER_TOPIC": "dead_letter_topic"} {
		if vars[name] != path {
			t.Errorf("%s → %q, want %q", name, vars[name], path)
		}
	}
}
