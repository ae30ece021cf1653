package main

import (
	"fmt"
	"os"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/pkg/snapshotters"
	"github.com/containerd/containerd/remotes/docker"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/urfave/cli/v2"
)

func pullCommand() *cli.Command {
	return &cli.Command{
		Name:      "pull",
		Usage:     "pull an image through containerd for the strata snapshotter, its lazy layers not downloaded",
		ArgsUsage: "REF",
		Description: "Like 'ctr images pull --snapshotter strata', but every layer's snapshot is\n" +
			"prepared with the image's reference and digests as labels: the snapshotter\n" +
			"then mounts eStargz and zstd:chunked layers lazily from the registry, and\n" +
			"containerd downloads only the manifest, the config and the other layers.\n" +
			"Credentials come from ~/.docker/config.json (and its credential helpers).\n" +
			"Then: ctr run --snapshotter strata REF ID COMMAND.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "address", Aliases: []string{"a"}, Value: "/run/containerd/containerd.sock", Usage: "containerd's socket `PATH`"},
			&cli.StringFlag{Name: "namespace", Aliases: []string{"n"}, Value: "default", Usage: "containerd `NAMESPACE` to pull into"},
			&cli.StringFlag{Name: "snapshotter", Value: "strata", Usage: "the strata snapshotter's `NAME` in containerd's proxy_plugins"},
			&cli.BoolFlag{Name: "plain-http", Usage: "talk plain HTTP to the registry (loopback registries always may)"},
		},
		Action: runPull,
	}
}

func runPull(c *cli.Context) error {
	if c.NArg() != 1 {
		return fmt.Errorf("pull: want one REF, got %d arguments (see 'strata-snapshotter pull --help')", c.NArg())
	}
	ref := c.Args().First()
	if _, err := name.ParseReference(ref, name.StrictValidation); err != nil {
		return fmt.Errorf("pull: %q: want a full reference such as registry.example/repo:tag: %w", ref, err)
	}
	// A missing socket fails at once, not after the dial's timeout.
	if _, err := os.Stat(c.String("address")); err != nil {
		return fmt.Errorf("pull: containerd's socket (--address): %w", err)
	}
	client, err := containerd.New(c.String("address"), containerd.WithTimeout(10*time.Second))
	if err != nil {
		return fmt.Errorf("pull: containerd at %s: %w", c.String("address"), err)
	}
	defer client.Close()
	plain := docker.MatchLocalhost
	if c.Bool("plain-http") {
		plain = docker.MatchAllHosts
	}
	hosts := docker.ConfigureDefaultRegistries(docker.WithPlainHTTP(plain),
		docker.WithAuthorizer(docker.NewDockerAuthorizer(docker.WithAuthCreds(keychainCreds))))
	ctx := namespaces.WithNamespace(c.Context, c.String("namespace"))
	start := time.Now()
	img, err := client.Pull(ctx, ref,
		containerd.WithPullUnpack,
		containerd.WithPullSnapshotter(c.String("snapshotter")),
		containerd.WithResolver(docker.NewResolver(docker.ResolverOptions{Hosts: hosts})),
		containerd.WithImageHandlerWrapper(snapshotters.AppendInfoHandlerWrapper(ref)))
	if err != nil {
		return fmt.Errorf("pull: %s: %w", ref, err)
	}
	fmt.Fprintf(os.Stderr, "pulled %s (%s) into snapshotter %s in %.2fs\n", img.Name(), img.Target().Digest, c.String("snapshotter"), time.Since(start).Seconds())
	return nil
}

// keychainCreds answers a registry's credential challenge from the docker
// keychain, as strata mount does; no entry means anonymous.
func keychainCreds(host string) (string, string, error) {
	reg, err := name.NewRegistry(host)
	if err != nil {
		return "", "", err
	}
	a, err := authn.DefaultKeychain.Resolve(reg)
	if err != nil {
		return "", "", err
	}
	cfg, err := a.Authorization()
	if err != nil {
		return "", "", err
	}
	if cfg.IdentityToken != "" {
		return "", cfg.IdentityToken, nil
	}
	return cfg.Username, cfg.Password, nil
}
