package main

import (
	"os"

	"github.com/ordo-dev/ordo/cmd/ordo/app"
	"github.com/ordo-dev/ordo/processors"
)

func main() {
	reg := processors.Builtins()
	if err := Register(reg); err != nil {
		panic(err)
	}
	os.Exit(app.Main(os.Args[1:], app.WithProcessors(reg)))
}
