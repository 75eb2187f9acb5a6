// Command ordo is the exactly-once event orchestrator. See README.md.
package main

import (
	"os"

	"github.com/ordo-dev/ordo"
)

func main() { os.Exit(ordo.Main(os.Args[1:])) }
