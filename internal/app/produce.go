package app

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ordo-dev/ordo/processors"
	"github.com/ordo-dev/ordo/publish"
	"github.com/ordo-dev/ordo/schemas"
)

func newProduceCmd(o *options) *cobra.Command {
	var (
		f        commonFlags
		topic    string
		typ      string
		schema   string
		keyField string
		file     string
		source   string
	)
	cmd := &cobra.Command{
		Use:   "produce --topic T --type FULL.NAME [--schema F.avsc] [--file F.jsonl]",
		Short: "Publish JSON lines as Avro events (Confluent wire format) through the Publisher SDK",
		Long: `Reads one JSON object per line (stdin, or --file) and publishes each as an
Avro event of --type on --topic, using the brokers and registry of --config
(ORDO_KAFKA_BROKERS and ORDO_REGISTRY_URL override them). The schema is
the one the config's schemas: block has for --type, or --schema. The envelope is filled in
when absent (id, type, source, time, correlation_id = the key).

Values are plain JSON: decimals as "12.34" strings or numbers, timestamps as
epoch milliseconds or RFC 3339 strings, unions as the bare value or null.

  echo '{"order_id":"o-1","customer_id":"cust-7","total":"12.50","currency":"EUR",
         "items":[{"sku":"A","qty":1,"unit_price":"12.50"}],"shipping_country":"DE","note":null}' |
    ordo produce --topic checkout.orders.v1 --type com.acme.checkout.OrderPlaced --key-field order_id`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(f.config, os.Environ(), nil)
			if err != nil {
				return err
			}
			var extra []*schemas.Schema
			if schema != "" {
				text, err := os.ReadFile(schema)
				if err != nil {
					return fmt.Errorf("--schema: %w", err)
				}
				s, err := schemas.ParseSchema(0, string(text))
				if err != nil {
					return fmt.Errorf("--schema %s: %w", schema, err)
				}
				extra = append(extra, s)
				if typ == "" {
					typ = s.FullName
				}
			}
			log, err := publishLogger(cmd, o, &f)
			if err != nil {
				return err
			}
			serde, readers, err := publisherSerde(cmd.Context(), cfg, log, extra...)
			if err != nil {
				return err
			}
			if _, ok := readers[typ]; !ok {
				return fmt.Errorf("--type %q: no schema (fix: pass --schema FILE.avsc, add the type's .avsc to schemas.files of --config, or use one of its types: %s)", typ, strings.Join(slices.Sorted(maps.Keys(readers)), ", "))
			}
			cl, err := newClient(cfg)
			if err != nil {
				return err
			}
			defer cl.Close()
			pub := publish.New(cl, serde, source)

			var in io.Reader = cmd.InOrStdin()
			if file != "" {
				fh, err := os.Open(file)
				if err != nil {
					return err
				}
				defer fh.Close()
				in = fh
			}
			sc := bufio.NewScanner(in)
			sc.Buffer(make([]byte, 1<<20), 16<<20)
			n := 0
			for line := 1; sc.Scan(); line++ {
				b := bytes.TrimSpace(sc.Bytes())
				if len(b) == 0 {
					continue
				}
				v, err := jsonToNatural(b)
				if err != nil {
					return fmt.Errorf("line %d: %w", line, err)
				}
				key := ""
				if keyField != "" {
					key = fmt.Sprint(v[keyField])
				}
				if err := normalizeForSchema(readers[typ], v); err != nil {
					return fmt.Errorf("line %d: %w", line, err)
				}
				r, err := pub.Publish(cmd.Context(), topic, typ, key, v)
				if err != nil {
					return fmt.Errorf("line %d: %w", line, err)
				}
				n++
				fmt.Fprintf(cmd.OutOrStdout(), "%s/%d@%d\n", r.Topic, r.Partition, r.Offset)
			}
			if err := sc.Err(); err != nil {
				return err
			}
			fmt.Fprintf(o.stderr, "published %d events\n", n)
			return nil
		},
	}
	f.register(cmd)
	fl := cmd.Flags()
	fl.StringVarP(&topic, "topic", "t", "", "topic to publish to (required)")
	fl.StringVar(&typ, "type", "", "full Avro name of the event type (required unless --schema names it)")
	fl.StringVar(&schema, "schema", "", "an .avsc file to use instead of the config's schema for --type")
	fl.StringVar(&keyField, "key-field", "", "top-level field whose value is the Kafka key (and correlation id)")
	fl.StringVar(&file, "file", "", "read JSON lines from this file instead of stdin")
	fl.StringVar(&source, "source", "ordo-produce", "envelope.source of the published events")
	_ = cmd.MarkFlagRequired("topic")
	return cmd
}

// jsonToNatural decodes a JSON object keeping integers exact.
func jsonToNatural(b []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v map[string]any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	return processors.NaturalJSON(v).(map[string]any), nil
}

// normalizeForSchema converts RFC 3339 strings in the envelope's time to
// time.Time (other timestamps accept epoch millis).
func normalizeForSchema(_ *schemas.Schema, v map[string]any) error {
	env, ok := v["envelope"].(map[string]any)
	if !ok {
		return nil
	}
	if s, ok := env["time"].(string); ok {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return fmt.Errorf("envelope.time %q: use RFC 3339 or epoch milliseconds", s)
		}
		env["time"] = t
	}
	return nil
}

// publishLogger is the logger of the publishing commands (produce, demo):
// warnings only unless --log-level is given, so that their output stays the
// published records.
func publishLogger(cmd *cobra.Command, o *options, f *commonFlags) (*slog.Logger, error) {
	level := f.logLevel
	if !cmd.Flags().Changed("log-level") {
		level = "warn"
	}
	return newLogger(o.stderr, f.logFormat, level)
}
