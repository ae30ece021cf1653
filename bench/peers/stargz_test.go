package peers

import (
	"context"
	"errors"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestChainID checks the chain ID against values computed by hand with
// sha256sum (`printf 'sha256:1… sha256:2…' | sha256sum`).
func TestChainID(t *testing.T) {
	d := func(c string) string { return "sha256:" + strings.Repeat(c, 64) }
	for _, c := range []struct {
		ids  []string
		want string
	}{
		{nil, ""},
		{[]string{d("1")}, d("1")},
		{[]string{d("1"), d("2")}, "sha256:9932074217c35353d2e03a3f5a86549f7c67bfeb0ba53e23d69f4d4c8f7958f5"},
		{[]string{d("1"), d("2"), d("3")}, "sha256:50127c0d6b338be78246434b4bce23ecf75e505158ea0bbd15effeb162fbf3ec"},
	} {
		if got := ChainID(c.ids); got != c.want {
			t.Errorf("ChainID(%d ids) = %s, want %s", len(c.ids), got, c.want)
		}
	}
}

func TestMountFlags(t *testing.T) {
	for _, c := range []struct {
		m     snapshotMount
		flags uintptr
		data  string
	}{
		{snapshotMount{Type: "overlay", Source: "overlay", Options: []string{"index=off", "workdir=/w", "upperdir=/u", "lowerdir=/a:/b"}},
			0, "index=off,workdir=/w,upperdir=/u,lowerdir=/a:/b"},
		{snapshotMount{Type: "bind", Source: "/s", Options: []string{"ro", "rbind"}}, unix.MS_BIND | unix.MS_REC | unix.MS_RDONLY, ""},
		{snapshotMount{Type: "bind", Source: "/s", Options: []string{"rw", "rbind"}}, unix.MS_BIND | unix.MS_REC, ""},
	} {
		flags, data := mountFlags(c.m)
		if flags != c.flags || data != c.data {
			t.Errorf("mountFlags(%+v) = %#x, %q; want %#x, %q", c.m, flags, data, c.flags, c.data)
		}
	}
}

// TestStargzConfigs checks the parts of the two configs the node relies
// on: every host a plain-HTTP mirror of itself, and containerd's proxy
// snapshotter, paths and sockets.
func TestStargzConfigs(t *testing.T) {
	s := StargzConfig([]string{"127.0.0.1:5000", "127.0.0.1:6000"})
	for _, want := range []string{
		"[[resolver.host.\"127.0.0.1:5000\".mirrors]]\nhost = \"127.0.0.1:5000\"\ninsecure = true\n",
		"[[resolver.host.\"127.0.0.1:6000\".mirrors]]\nhost = \"127.0.0.1:6000\"\ninsecure = true\n",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("stargz config lacks %q:\n%s", want, s)
		}
	}
	c := ContainerdConfig("/n/containerd", "/n/containerd.sock", "stargz", "/n/stargz.sock")
	for _, want := range []string{"version = 2\n", "root = \"/n/containerd/root\"\n", "state = \"/n/containerd/state\"\n",
		"[grpc]\n  address = \"/n/containerd.sock\"\n", "[ttrpc]\n  address = \"/n/containerd.sock.ttrpc\"\n",
		"path = \"/n/containerd/opt\"\n", "[proxy_plugins.stargz]\n  type = \"snapshot\"\n  address = \"/n/stargz.sock\"\n",
		"\"io.containerd.grpc.v1.cri\""} {
		if !strings.Contains(c, want) {
			t.Errorf("containerd config lacks %q:\n%s", want, c)
		}
	}
	if plain := ContainerdConfig("/n/containerd", "/n/containerd.sock", "", ""); strings.Contains(plain, "proxy_plugins") {
		t.Errorf("containerd config without a proxy names one:\n%s", plain)
	}
}

func TestEnsureStargzWantsBinaries(t *testing.T) {
	err := EnsureStargz(context.Background(), t.TempDir())
	if !errors.Is(err, ErrNoStargz) || !strings.Contains(err.Error(), StargzGRPC) {
		t.Errorf("EnsureStargz(empty dir) = %v, want ErrNoStargz naming %s", err, StargzGRPC)
	}
}
