package app

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/ordo-dev/ordo/internal/config"
	"github.com/ordo-dev/ordo/internal/ops"
)

// newProcessCmd is `ordo process show|list`: process instances as the
// committed changelog holds them (docs/processes.md, Inspecting instances).
func newProcessCmd(o *options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "process",
		Short: "Inspect process (saga) instances from the committed changelog",
		Long: `Inspect process instances. Both subcommands read the state changelog topic
(state.changelog) read_committed from the cluster, never a local store, so they
work from any machine that can reach Kafka and show exactly what committed.`,
	}
	var (
		cfgPath, output, process string
		timeout                  time.Duration
	)
	load := func() (*config.Config, ops.ProcessQuery, error) {
		if output != "text" && output != "json" {
			return nil, ops.ProcessQuery{}, fmt.Errorf("--output %q: use text or json", output)
		}
		cfg, err := config.Load(cfgPath, os.Environ())
		if err != nil {
			return nil, ops.ProcessQuery{}, err
		}
		if cfg.State == nil {
			return nil, ops.ProcessQuery{}, fmt.Errorf("%s has no state: block, so it runs no processes (docs/processes.md)", cfgPath)
		}
		st := cfg.StateSettings()
		return cfg, ops.ProcessQuery{Changelog: st.Changelog, ProcessLog: st.ProcessLog, Process: process, Now: time.Now(), Timeout: timeout}, nil
	}
	write := func(cmd *cobra.Command, res *ops.ProcessResult, text func()) error {
		if output == "json" {
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(res)
		}
		text()
		return nil
	}

	var versions bool
	show := &cobra.Command{
		Use:   "show CORRELATION-ID",
		Short: "Print a correlation id's instances: state, variables, timers, compensations, history, changelog position",
		Example: `  ordo process show -c ordo.yaml ord-000042
  ordo process show -c ordo.yaml ord-000042 --versions      # every committed version still in the changelog
  ordo process show -c ordo.yaml ord-000042 --output json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, q, err := load()
			if err != nil {
				return err
			}
			q.CorrelationID, q.Versions = args[0], versions
			conn, err := clientOpts(cfg)
			if err != nil {
				return err
			}
			res, err := ops.ReadProcesses(cmd.Context(), conn, q)
			if err != nil {
				return err
			}
			if err := write(cmd, res, func() { ops.WriteProcessShow(cmd.OutOrStdout(), res, q) }); err != nil {
				return err
			}
			if len(res.Instances) == 0 {
				return exitError(1)
			}
			return nil
		},
	}
	show.Flags().BoolVar(&versions, "versions", false, "also list every committed version of each instance still in the changelog (event sourcing view)")

	var (
		state, status        string
		olderThan, newerThan time.Duration
		limit                int
	)
	list := &cobra.Command{
		Use:   "list",
		Short: "List instances, filtered by process, state, status and age",
		Example: `  ordo process list -c ordo.yaml --status running --older-than 10m   # stuck orders
  ordo process list -c ordo.yaml --process order-fulfilment --state cancelled --limit 20`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, q, err := load()
			if err != nil {
				return err
			}
			q.State, q.Status, q.OlderThan, q.NewerThan, q.Limit = state, status, olderThan, newerThan, limit
			conn, err := clientOpts(cfg)
			if err != nil {
				return err
			}
			res, err := ops.ReadProcesses(cmd.Context(), conn, q)
			if err != nil {
				return err
			}
			return write(cmd, res, func() { ops.WriteProcessList(cmd.OutOrStdout(), res, q) })
		},
	}
	lf := list.Flags()
	lf.StringVar(&state, "state", "", "only instances in this state")
	lf.StringVar(&status, "status", "", "only this status: running, or a terminal state's status (completed, cancelled, ...)")
	lf.DurationVar(&olderThan, "older-than", 0, "only instances last updated (event time) longer ago than this")
	lf.DurationVar(&newerThan, "newer-than", 0, "only instances last updated within this")
	lf.IntVar(&limit, "limit", 0, "at most this many (newest update first; 0 = all)")

	for _, c := range []*cobra.Command{show, list} {
		fl := c.Flags()
		fl.StringVarP(&cfgPath, "config", "c", config.DefaultPath, "YAML config file (brokers, state:); ORDO_* environment variables override its keys")
		fl.StringVarP(&output, "output", "o", "text", "text or json")
		fl.StringVar(&process, "process", "", "only instances of this process")
		fl.DurationVar(&timeout, "timeout", 60*time.Second, "bound on reading the changelog")
	}
	cmd.AddCommand(show, list)
	_ = o
	return cmd
}
