// Command strata mounts container image layers as one tree. See doc.go.
package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"
)

func main() {
	app := &cli.App{
		Name:  "strata",
		Usage: "run container images without pulling them first",
		Description: "strata merges an image's read-only layers and a per-container writable\n" +
			"upper directory into one tree served by FUSE, the way kernel overlayfs\n" +
			"would, with the upper directory kept in overlayfs's own format.",
		Commands:       []*cli.Command{mountCommand(), umountCommand(), statCommand(), convertCommand(), cacheCommand()},
		ExitErrHandler: func(*cli.Context, error) {},
	}
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "strata:", err)
		os.Exit(1)
	}
}
