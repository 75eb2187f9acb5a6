// Command ordo is the exactly-once event orchestrator. See README.md.
package main

import (
	"os"

	"github.com/ordo-dev/ordo/cmd/ordo/app"
)

func main() { os.Exit(app.Main(os.Args[1:])) }
