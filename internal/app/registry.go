package app

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/ordo-dev/ordo/internal/devenv"
	"github.com/ordo-dev/ordo/schemas"
)

func newRegistryCmd(o *options) *cobra.Command {
	var addr, dataDir, level string
	cmd := &cobra.Command{
		Use:   "registry",
		Short: "Serve ordo's embedded Confluent-compatible schema registry alone",
		Long: `Serves the schema registry that ordo dev embeds on --addr, persisted to
--data-dir/registry.json, until SIGINT/SIGTERM. Tests and foreign clients
(confluent-kafka, @confluentinc/schemaregistry) share it when ordo runs
against a real Kafka cluster without a registry of its own.

It behaves like a production registry where that matters: a registration
is checked against the subject's compatibility level (PUT /config or
/config/{subject}; NONE, BACKWARD (the default), FORWARD, FULL and their
_TRANSITIVE forms) with ordo's resolution rules and refused with HTTP 409
and Confluent's error body; POST /compatibility/subjects/{s}/versions/{v}
really checks; schemas may use schema references (shared named types).
See docs/schemas.md.`,
		Example: `  ordo registry --addr 127.0.0.1:8081 --data-dir .ordo
  curl -s -X PUT -H 'Content-Type: application/json' -d '{"compatibility":"FULL"}' http://127.0.0.1:8081/config/payments.v1-value
  ordo schemas check --registry http://127.0.0.1:8081 --subject payments.v1-value Payment.avsc`,
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
			if cmd.Flags().Changed("compatibility") {
				l, err := schemas.ParseLevel(level)
				if err == nil {
					err = reg.SetCompatibility("", l)
				}
				if err != nil {
					_ = reg.Close()
					return fmt.Errorf("--compatibility: %w", err)
				}
			}
			fmt.Fprintf(o.stderr, "schema registry listening on %s (data %s, compatibility %s)\n", reg.URL(), file, reg.Compatibility(""))
			<-cmd.Context().Done()
			return reg.Close()
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:8081", "listen address")
	cmd.Flags().StringVar(&dataDir, "data-dir", ".ordo", "directory for registry.json (\"\" keeps schemas in memory only)")
	cmd.Flags().StringVar(&level, "compatibility", "BACKWARD", "global compatibility level to set at start (default: the saved one, else BACKWARD)")
	return cmd
}
