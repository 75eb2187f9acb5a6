package main

import (
	"os"

	"github.com/ordo-dev/ordo"
	"github.com/ordo-dev/ordo/processors"
)

func main() {
	reg := processors.Builtins()
	if err := Register(reg); err != nil {
		panic(err)
	}
	os.Exit(ordo.Main(os.Args[1:], ordo.WithProcessors(reg)))
}
