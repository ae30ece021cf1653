package images

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// The Debian images' recipes. Everything that changes what they contain
// is in a spec string, so changing it rebuilds them.
const (
	suite = "bookworm"

	pythonPackages = "python3"
	// toolchainPackages: a C/C++ and Go development image. Boost's headers,
	// Go's sources and the kernel headers bring the file count of
	// debian-large above 50,000, as real development images have.
	toolchainPackages = "gcc g++ make libc6-dev libboost1.74-dev linux-headers-amd64 golang-go"

	// dataFiles of dataFileSize bytes each, seeds 1..dataFiles.
	dataFiles    = 3
	dataFileSize = 128 << 20
)

// hostEnv is the environment of the build's host commands (debootstrap).
var hostEnv = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LC_ALL=C"}

var pythonConfig = imageConfig{
	cmd:        []string{"python3", "/app/main.py"},
	env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
	workingDir: "/app",
}

func debianRecipes() []*recipe {
	python := &recipe{
		name:   "debian-python",
		spec:   fmt.Sprintf("debootstrap minbase %s; apt %s; app %s", suite, pythonPackages, appVersion),
		config: pythonConfig,
		steps: []step{
			{name: "base", createdBy: "debootstrap --variant=minbase " + suite, run: debootstrapStep},
			{name: "python", createdBy: "apt-get install --no-install-recommends " + pythonPackages, run: aptStep(pythonPackages)},
			{name: "app", createdBy: "COPY app /app", run: appStep},
		},
	}
	large := &recipe{
		name:   "debian-large",
		parent: python.name,
		spec:   fmt.Sprintf("apt %s; data %d x %d", toolchainPackages, dataFiles, dataFileSize),
		config: pythonConfig,
		steps: []step{
			{name: "toolchain", createdBy: "apt-get install --no-install-recommends " + toolchainPackages, run: aptStep(toolchainPackages)},
			{name: "data", createdBy: fmt.Sprintf("COPY data /data (%d x %d MiB)", dataFiles, dataFileSize>>20), run: dataStep},
		},
	}
	return []*recipe{python, large}
}

// debootstrapStep makes the minbase rootfs from the host's Debian mirror.
// debootstrap mounts /proc and /sys in the target while it runs, so it
// runs in a private mount namespace: its mounts cannot outlive it.
func debootstrapStep(ctx context.Context, b *builder) error {
	mirror := b.o.Mirror
	if mirror == "" {
		var err error
		if mirror, err = findMirror("/etc/apt", suite); err != nil {
			return err
		}
	}
	if err := ensureTool(ctx, "debootstrap", "debootstrap", b.logPath("tools")); err != nil {
		return err
	}
	debs := filepath.Join(b.o.CacheDir, "debs")
	if err := os.MkdirAll(debs, 0o755); err != nil {
		return err
	}
	b.log.printf("debootstrap --variant=minbase %s from %s (log %s)", suite, mirror, b.logPath("base"))
	err := run(ctx, b.logPath("base"), hostEnv, "unshare", "--mount", "--propagation", "private",
		"debootstrap", "--variant=minbase", "--cache-dir="+debs, suite, b.root, mirror)
	if err != nil {
		return err
	}
	return tidyRootfs(b.root)
}

// tidyRootfs leaves out of the base what describes the build host, not
// the image: resolv.conf stays as an empty file (the runtime mounts its
// own there, as the chroot steps do), and apt's downloaded lists and
// packages go, as in every Debian base image.
func tidyRootfs(root string) error {
	files := map[string]string{"etc/resolv.conf": "", "etc/hostname": "localhost\n"}
	for p, content := range files {
		if err := os.WriteFile(filepath.Join(root, p), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return aptClean(root)
}

// aptClean removes apt's package lists and downloaded .debs.
func aptClean(root string) error {
	for _, pat := range []string{"var/lib/apt/lists/*", "var/cache/apt/archives/*.deb", "var/cache/apt/*.bin"} {
		m, err := filepath.Glob(filepath.Join(root, pat))
		if err != nil {
			return err
		}
		for _, p := range m {
			if err := os.RemoveAll(p); err != nil {
				return err
			}
		}
	}
	return nil
}

// aptStep installs packages in the chroot, without recommends, and
// cleans apt's lists and caches in the same step, so the layer holds
// only the installed files (as a Dockerfile's single RUN line does).
func aptStep(packages string) func(context.Context, *builder) error {
	script := "apt-get update -q\napt-get install -y -q --no-install-recommends " + packages + "\napt-get clean\n"
	return func(ctx context.Context, b *builder) error {
		name := strings.Fields(packages)[0]
		b.log.printf("chroot: apt-get install %s (log %s)", packages, b.logPath(name))
		if err := inChroot(ctx, b.root, script, b.logPath(name)); err != nil {
			return err
		}
		return aptClean(b.root)
	}
}

// dataStep writes the large data files under /data.
func dataStep(ctx context.Context, b *builder) error {
	dir := filepath.Join(b.root, "data")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for i := 1; i <= dataFiles; i++ {
		p := filepath.Join(dir, fmt.Sprintf("blob-%d.bin", i))
		if err := writeDataFile(ctx, p, dataFileSize, uint64(i)); err != nil {
			return err
		}
	}
	return nil
}

// ensureTool installs a missing host tool with apt-get (refreshing the
// package lists once if the first try fails).
func ensureTool(ctx context.Context, bin, pkg, logPath string) error {
	if _, err := exec.LookPath(bin); err == nil {
		return nil
	}
	for _, p := range []string{"/usr/sbin/", "/usr/bin/", "/sbin/"} {
		if _, err := os.Stat(p + bin); err == nil {
			return nil
		}
	}
	env := append(hostEnv, "DEBIAN_FRONTEND=noninteractive")
	err := run(ctx, logPath, env, "apt-get", "install", "-y", "-q", pkg)
	if err != nil {
		if err = run(ctx, logPath, env, "apt-get", "update", "-q"); err == nil {
			err = run(ctx, logPath, env, "apt-get", "install", "-y", "-q", pkg)
		}
	}
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrNoTool, bin, err)
	}
	return nil
}
