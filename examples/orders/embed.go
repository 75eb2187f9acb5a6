// Package orders is the order-fulfilment demo that `ordo dev` runs: its
// config and the files the config refers to (customer-tiers.csv), embedded
// in the binary so that ordo works from any directory. The Avro schemas it
// uses are embedded by package schemas (schemas.DemoFS).
package orders

import (
	"embed"
	"io/fs"
)

// ConfigName is the config's name inside Files.
const ConfigName = "ordo.yaml"

//go:embed ordo.yaml customer-tiers.csv
var files embed.FS

// Files returns the embedded example: ordo.yaml and the files it names,
// with their paths relative to it.
func Files() fs.FS { return files }
