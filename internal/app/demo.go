package app

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ordo-dev/ordo/internal/demo"
	"github.com/ordo-dev/ordo/publish"
)

func newDemoCmd(o *options) *cobra.Command {
	var (
		f                           commonFlags
		events                      int
		rate                        float64
		poisonEvery, duplicateEvery int
		topics                      map[string]string
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Publish the order-fulfilment demo traffic to a running cluster",
		Long: `Publishes the demo traffic of ordo dev (checkout, payments and warehouse
events, with poison records and duplicate deliveries) to the brokers and
registry of --config (ORDO_KAFKA_BROKERS / ORDO_REGISTRY_URL override them),
through the Publisher SDK. Use it with ordo run replicas, e.g. in
docker-compose.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(f.config, os.Environ(), nil)
			if err != nil {
				return err
			}
			log, err := publishLogger(cmd, o, &f)
			if err != nil {
				return err
			}
			serde, readers, err := publisherSerde(cmd.Context(), cfg, log)
			if err != nil {
				return err
			}
			if err := demoTypesKnown(readers, "add their .avsc files (examples/orders/schemas) to schemas.files"); err != nil {
				return err
			}
			if err != nil {
				return err
			}
			cl, err := newClient(cfg, kgo.ProducerLinger(5*time.Millisecond))
			if err != nil {
				return err
			}
			defer cl.Close()
			n := events
			if n == 0 {
				n = int(^uint(0) >> 1)
			}
			pub := publish.New(cl, serde, "demo")
			seed := uint64(time.Now().UnixNano())
			start := time.Now()
			var published int
			if cfg.State != nil {
				// A saga config: whole orders (OrderPlaced + legs), so that
				// every order can end; --events counts orders.
				if events == 0 {
					n = 0 // SagaGenerator: until Ctrl-C
				}
				gen := demo.NewSagaGenerator(cl, pub, demo.SagaOptions{
					Orders: n, Rate: rate, PoisonEvery: poisonEvery, DuplicateEvery: duplicateEvery, Seed: seed, Topics: topics,
				})
				err = gen.Run(cmd.Context())
				published = len(gen.Published())
			} else {
				gen := demo.NewGenerator(cl, pub, demo.Options{
					Events: n, Rate: rate, PoisonEvery: poisonEvery, DuplicateEvery: duplicateEvery, Seed: seed, Topics: topics,
				})
				err = gen.Run(cmd.Context())
				published = len(gen.Published())
			}
			if cmd.Context().Err() != nil {
				err = nil
			}
			fmt.Fprintf(o.stderr, "published %d demo records in %.1fs\n", published, time.Since(start).Seconds())
			return err
		},
	}
	f.register(cmd)
	fl := cmd.Flags()
	fl.IntVar(&events, "events", 0, "events to publish, or orders with a saga config (0 = until Ctrl-C)")
	fl.Float64Var(&rate, "rate", 100, "events per second (0 = as fast as possible)")
	fl.IntVar(&poisonEvery, "poison-every", 97, "every Nth event is poison (0 = none)")
	fl.IntVar(&duplicateEvery, "duplicate-every", 89, "every Nth event re-delivers the previous one (0 = none)")
	fl.StringToStringVar(&topics, "topic", nil, "publish to another topic than a demo topic, e.g. --topic checkout.orders.v1=orders-test")
	return cmd
}
