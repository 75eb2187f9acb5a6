package testkit

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"
)

// One container per test binary: starting Kafka takes seconds, and tests
// isolate themselves with UniqueName. It is removed by testcontainers'
// reaper (Ryuk) when the test binary exits, or earlier by Main.
var (
	dockerMu      sync.Mutex
	dockerCtr     testcontainers.Container
	dockerAddrs   []string
	dockerStartup error
)

const (
	clientPort  = "9092/tcp"
	startScript = "/tmp/ordo_kafka_start.sh"
)

// Main runs the tests and then removes the shared Kafka container, if one
// was started. Use it from TestMain when Ryuk is disabled
// (TESTCONTAINERS_RYUK_DISABLED=true):
//
//	func TestMain(m *testing.M) { os.Exit(testkit.Main(m)) }
func Main(m *testing.M) int {
	code := m.Run()
	dockerMu.Lock()
	defer dockerMu.Unlock()
	if dockerCtr != nil {
		if err := testcontainers.TerminateContainer(dockerCtr); err != nil {
			fmt.Printf("testkit: terminate kafka container: %v\n", err)
		}
		dockerCtr = nil
	}
	return code
}

func dockerBrokers(t testing.TB) ([]string, error) {
	t.Helper()
	dockerMu.Lock()
	defer dockerMu.Unlock()
	if dockerAddrs != nil {
		return dockerAddrs, nil
	}
	if dockerStartup != nil {
		return nil, dockerStartup // do not retry a failed start in every test
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ctr, addr, err := runKafkaContainer(ctx)
	if err != nil {
		if ctr != nil {
			_ = testcontainers.TerminateContainer(ctr)
		}
		dockerStartup = err
		return nil, err
	}
	dockerCtr = ctr
	dockerAddrs = []string{addr}
	if err := checkReachable(dockerAddrs, 30*time.Second); err != nil {
		dockerStartup = fmt.Errorf("container started but %s does not answer: %w", addr, err)
		dockerAddrs = nil
		return nil, dockerStartup
	}
	return dockerAddrs, nil
}

// runKafkaContainer starts apache/kafka in KRaft combined mode with the same
// broker settings as test/kafka/kafka.sh. The advertised listener must carry
// the host's mapped port, known only after the container starts, so the
// container waits for a start script that a post-start hook copies in.
func runKafkaContainer(ctx context.Context) (testcontainers.Container, string, error) {
	var addr string
	ctr, err := testcontainers.Run(ctx, KafkaImage,
		testcontainers.WithExposedPorts(clientPort),
		testcontainers.WithEnv(map[string]string{
			"CLUSTER_ID":                                             "b3Jkby10ZXN0a2l0LWthZg",
			"KAFKA_NODE_ID":                                          "1",
			"KAFKA_PROCESS_ROLES":                                    "broker,controller",
			"KAFKA_LISTENERS":                                        "PLAINTEXT://0.0.0.0:9092,BROKER://0.0.0.0:19092,CONTROLLER://0.0.0.0:9093",
			"KAFKA_LISTENER_SECURITY_PROTOCOL_MAP":                   "PLAINTEXT:PLAINTEXT,BROKER:PLAINTEXT,CONTROLLER:PLAINTEXT",
			"KAFKA_INTER_BROKER_LISTENER_NAME":                       "BROKER",
			"KAFKA_CONTROLLER_LISTENER_NAMES":                        "CONTROLLER",
			"KAFKA_CONTROLLER_QUORUM_VOTERS":                         "1@localhost:9093",
			"KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR":                 "1",
			"KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR":         "1",
			"KAFKA_TRANSACTION_STATE_LOG_MIN_ISR":                    "1",
			"KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR": "1",
			"KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR":            "1",
			"KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS":                 "0",
			"KAFKA_AUTO_CREATE_TOPICS_ENABLE":                        "false",
			"KAFKA_NUM_PARTITIONS":                                   "3",
			"KAFKA_HEAP_OPTS":                                        "-Xms256m -Xmx512m",
		}),
		testcontainers.WithEntrypoint("sh"),
		testcontainers.WithCmd("-c", "while [ ! -f "+startScript+" ]; do sleep 0.1; done; exec sh "+startScript),
		testcontainers.WithLifecycleHooks(testcontainers.ContainerLifecycleHooks{
			PostStarts: []testcontainers.ContainerHook{
				func(ctx context.Context, c testcontainers.Container) error {
					if err := wait.ForMappedPort(clientPort).WaitUntilReady(ctx, c); err != nil {
						return fmt.Errorf("wait for mapped port: %w", err)
					}
					ep, err := c.PortEndpoint(ctx, clientPort, "")
					if err != nil {
						return fmt.Errorf("port endpoint: %w", err)
					}
					addr = ep
					script := "#!/bin/sh\n" +
						"export KAFKA_ADVERTISED_LISTENERS=PLAINTEXT://" + ep + ",BROKER://localhost:19092\n" +
						"exec /etc/kafka/docker/run\n"
					if err := c.CopyToContainer(ctx, []byte(script), startScript, 0o755); err != nil {
						return fmt.Errorf("copy start script: %w", err)
					}
					return wait.ForLog("Kafka Server started").
						WithStartupTimeout(2*time.Minute).WaitUntilReady(ctx, c)
				},
			},
		}),
	)
	if err != nil {
		if ctr == nil {
			return nil, "", fmt.Errorf("run %s: %w", KafkaImage, err)
		}
		return ctr, "", fmt.Errorf("run %s: %w", KafkaImage, err)
	}
	return ctr, addr, nil
}
