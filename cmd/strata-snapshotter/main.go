// Command strata-snapshotter is strata as containerd's snapshotter: `serve`
// runs package snapshotter as a proxy plugin over gRPC, and `pull` pulls
// an image through containerd so that its lazily loadable layers are
// mounted from the registry instead of downloaded. It is a binary of its
// own, not a strata command, so that containerd's client libraries do not
// slow the start of every strata process.
//
// containerd's config.toml names the plugin:
//
//	[proxy_plugins.strata]
//	  type = "snapshot"
//	  address = "/run/strata-snapshotter/strata.sock"
//
// Then:
//
//	strata-snapshotter serve &
//	strata-snapshotter pull REF
//	ctr run --snapshotter strata REF ID COMMAND
package main

import (
	"fmt"
	"os"
	"runtime/debug"

	"github.com/stratafs/strata/unionfs"
	"github.com/urfave/cli/v2"
)

// gcPercent is the GOGC of the snapshotter unless the environment sets
// one, as strata mount's: its heap is mostly the images' trees. (serve
// also advises its heap for huge pages, as strata mount does.)
const gcPercent = 50

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	unionfs.SetServerProcs()
	app := &cli.App{
		Name:  "strata-snapshotter",
		Usage: "containerd snapshotter that mounts image layers lazily from their registry",
		Description: "serve runs the snapshotter as containerd's proxy plugin; pull pulls an image\n" +
			"through containerd with the labels that let the snapshotter mount its\n" +
			"eStargz and zstd:chunked layers lazily instead of containerd downloading them.\n" +
			"Other layers are containerd's overlayfs snapshots, unpacked as usual.",
		Commands:       []*cli.Command{serveCommand(), pullCommand(), serveMountCommand()},
		ExitErrHandler: func(*cli.Context, error) {},
	}
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "strata-snapshotter:", err)
		os.Exit(1)
	}
}
