package app

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/ordo-dev/ordo/internal/devenv"
)

func newRegistryCmd(o *options) *cobra.Command {
	var addr, dataDir string
	cmd := &cobra.Command{
		Use:   "registry",
		Short: "Serve ordo's embedded Confluent-compatible schema registry alone",
		Long: `Serves the schema registry that ordo dev embeds (franz-go srfake) on --addr,
persisted to --data-dir/registry.json, until SIGINT/SIGTERM. Tests and
foreign clients (confluent-kafka, @confluentinc/schemaregistry) share it
when ordo runs against a real Kafka cluster without a registry of its own.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			file := ""
			if dataDir != "" {
				file = filepath.Join(dataDir, "registry.json")
			}
			reg, err := devenv.StartRegistry(addr, file, nil)
			if err != nil {
				return err
			}
			fmt.Fprintf(o.stderr, "schema registry listening on %s (data %s)\n", reg.URL(), file)
			<-cmd.Context().Done()
			return reg.Close()
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:8081", "listen address")
	cmd.Flags().StringVar(&dataDir, "data-dir", ".ordo", "directory for registry.json (\"\" keeps schemas in memory only)")
	return cmd
}
