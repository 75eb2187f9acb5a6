// Package orders is the order-fulfilment demo that `ordo dev` runs: its
// config and the files the config refers to (customer-tiers.csv and the Avro
// schemas in schemas/), embedded in the binary so that ordo works from any
// directory. The schemas are also ordo's built-in default (schemas.Demo) for
// a config without a `schemas:` block.
package orders

import (
	"embed"
	"io/fs"
)

// ConfigName is the config's name inside Files.
const ConfigName = "ordo.yaml"

// SchemaDir is the directory of the example's .avsc files inside Files (one
// file per type, named after the type's full name).
const SchemaDir = "schemas"

//go:embed ordo.yaml router.yaml customer-tiers.csv schemas/*.avsc
var files embed.FS

// Files returns the embedded example: ordo.yaml and the files it names,
// with their paths relative to it.
func Files() fs.FS { return files }

// Schemas returns the example's .avsc files (SchemaDir inside Files).
func Schemas() fs.FS {
	sub, err := fs.Sub(files, SchemaDir)
	if err != nil {
		panic(err) // impossible: the directory is embedded at build time
	}
	return sub
}
