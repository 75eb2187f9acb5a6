// Package devenv runs ordo's embedded infrastructure for `ordo dev` and
// tests: an in-process Kafka-protocol broker (franz-go kfake) and a
// Confluent-compatible schema registry (franz-go srfake, with ordo's
// compatibility enforcement in front, see Registry) on real loopback
// listeners, both persisted under a data directory so a restart keeps the
// data.
package devenv

import (
	"fmt"
	"net"
	"os"
	"strconv"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Kafka starts kfake on addr (host:port) persisting to dir ("" = memory
// only). Close the returned cluster to stop it.
func Kafka(addr, dir string) (*kfake.Cluster, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("kafka address %q: %w (fix: write host:port, e.g. 127.0.0.1:9092)", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("kafka address %q: bad port", addr)
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.Ports(port),
		kfake.ClusterID("ordo-dev"),
		kfake.DefaultNumPartitions(3),
		// kfake always listens on 127.0.0.1; honour another host.
		kfake.ListenFn(func(network, a string) (net.Listener, error) {
			_, p, _ := net.SplitHostPort(a)
			return net.Listen(network, net.JoinHostPort(host, p))
		}),
	}
	if dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("kafka data dir: %w", err)
		}
		opts = append(opts, kfake.DataDir(dir))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("start embedded kafka on %s: %w (fix: stop whatever uses the port, or pass --kafka-addr)", addr, err)
	}
	return c, nil
}
