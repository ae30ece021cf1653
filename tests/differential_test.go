package tests

import (
	"crypto/sha256"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The differential suite runs the same operations on kernel overlayfs (the
// oracle) and on strata over identical layers, then compares what each
// operation returned, the merged tree and the upper directory left behind.

// op is one operation on a merged mount. run returns a result worth
// comparing (data read, a stat) besides its error; the error is compared by
// errno name.
type op struct {
	name string
	run  func(root string) (string, error)
}

// mounted is a union mounted for one side of a scenario.
type mounted struct {
	dir   string
	abort func()        // breaks a hung mount; nil when there is no way
	log   func() string // what the server logged; nil for kernel mounts
}

// mountFn mounts layers (lowest first) with a writable upper; the mount is
// undone in t's cleanup.
type mountFn func(t *testing.T, layers []string, upper string) mounted

// subject is the union under test; the oracle is always kernel overlayfs.
var subject = struct {
	name  string
	mount mountFn
}{"strata", func(t *testing.T, layers []string, upper string) mounted {
	m := mountStrata(t, layers, upper)
	cmd := m.cmd
	return mounted{
		dir: m.Dir,
		// Killing the server makes every request it holds fail with ENOTCONN.
		abort: func() { cmd.Process.Kill() },
		log:   m.stderr.String,
	}
}}

func overlayMount(t *testing.T, layers []string, upper string) mounted {
	return mounted{dir: mountOverlay(t, layers, upper)}
}

// scenario is one row of the table.
type scenario struct {
	name   string
	layers [][]ent // lowest first
	upper  []ent   // pre-populated upper, in overlayfs form
	ops    []op
}

// deliberateDiff is a place where strata means to differ from overlayfs in
// the scenario's first operation. The oracle runs oracleOps (which reach the
// same end state the overlayfs way) in place of that operation; check
// asserts what each side returned for it; the results of the remaining
// operations and the merged trees must then be equal, and kernel overlayfs
// reading strata's upper must see strata's merged tree.
//
// A difference that is not in one operation's outcome but in what a whole
// scenario shows sets custom instead: both sides run the same operations and
// custom judges the two results.
type deliberateDiff struct {
	oracleOps []op
	check     func(t *testing.T, oracle []string, subject string)
	custom    func(t *testing.T, oracle, subject sideResult)
}

// deliberateDifferences lists every scenario in which strata deliberately
// departs from kernel overlayfs (redirect_dir=off), keyed by scenario name.
var deliberateDifferences = map[string]deliberateDiff{
	// overlayfs without redirect_dir cannot rename a directory that exists
	// in a lower layer and answers EXDEV (mv then falls back to copy +
	// delete). strata copies the subtree up and renames it, so the rename
	// succeeds and the result equals what mv's fallback produces.
	"rename-lower-dir": renameDirDiff("d", "dnew"),
	// The same, with signals landing in the subtree's copy-up.
	"rename-lower-dir-interrupted": renameDirDiff("d", "dnew"),
	// Same rule for a merged directory (in the upper and in a lower).
	"rename-merged-dir": renameDirDiff("both", "both2"),
	// Lower hard links: overlayfs with index=off breaks the link at copy-up,
	// so a change through one name is not seen through the other. strata
	// keeps them one file, as overlayfs with index=on does, and links every
	// name in the upper.
	"hardlinks-lower-write-one": hardlinkDiff(`read hl2: ok "shared\n"`, `read hl2: ok "SHARED\n"`),
	"hardlinks-lower-chmod-one": hardlinkDiff(`stat hl1: ok file 0644`, `stat hl1: ok file 0600`),
}

// hardlinkDiff expects overlayfs to have broken the link between hl1 and
// hl2 (a result holding broken) and strata to have kept it (kept), with
// both names one inode in strata's upper; everything else must be equal.
func hardlinkDiff(broken, kept string) deliberateDiff {
	return deliberateDiff{custom: func(t *testing.T, oracle, subj sideResult) {
		has := func(results []string, want string) bool {
			return slices.ContainsFunc(results, func(r string) bool { return strings.Contains(r, want) })
		}
		if !has(oracle.results, broken) {
			t.Errorf("overlayfs kept the hard link (no %q in %q)", broken, oracle.results)
		}
		if !has(subj.results, kept) {
			t.Errorf("%s broke the hard link (no %q in %q)", subject.name, kept, subj.results)
		}
		if !strings.Contains(subj.upperT["hl1"], "nlink=2") || !strings.Contains(subj.upperT["hl2"], "same-inode-as=hl1") {
			t.Errorf("%s upper: hl1 %q, hl2 %q: want one inode with two links", subject.name, subj.upperT["hl1"], subj.upperT["hl2"])
		}
		without := func(m map[string]string) map[string]string {
			c := maps.Clone(m)
			delete(c, "hl1")
			delete(c, "hl2")
			return c
		}
		compareTrees(t, "merged tree (hl1, hl2 aside)", without(oracle.merged), without(subj.merged))
		compareTrees(t, "upper dir (hl1, hl2 aside)", without(oracle.upperT), without(subj.upperT))
	}}
}

func renameDirDiff(from, to string) deliberateDiff {
	return deliberateDiff{
		oracleOps: []op{
			opRename(from, to),
			opShell("cp", "-a", from, to),
			opShell("rm", "-rf", from),
		},
		check: func(t *testing.T, oracle []string, subj string) {
			if !strings.HasSuffix(oracle[0], ": EXDEV") {
				t.Errorf("overlayfs renamed lower dir %s: got %q, want EXDEV (is redirect_dir off?)", from, oracle[0])
			}
			if !strings.HasSuffix(subj, ": ok") {
				t.Errorf("%s renamed lower dir %s: got %q, want ok", subject.name, from, subj)
			}
		},
	}
}

// sideResult is what one run of a scenario left.
type sideResult struct {
	layers  []string
	upper   string
	results []string
	merged  map[string]string
	upperT  map[string]string
	log     func() string
}

func TestDifferential(t *testing.T) {
	old := unix.Umask(0o022)
	defer unix.Umask(old)
	start := time.Now()
	table := scenarios()
	if len(table) < 45 {
		t.Fatalf("only %d scenarios", len(table))
	}
	seen := map[string]bool{}
	for _, sc := range table {
		if seen[sc.name] {
			t.Fatalf("duplicate scenario %q", sc.name)
		}
		seen[sc.name] = true
		t.Run(sc.name, func(t *testing.T) { runScenario(t, sc) })
	}
	for name := range deliberateDifferences {
		if !seen[name] {
			t.Errorf("deliberate difference %q names no scenario", name)
		}
	}
	t.Logf("%d scenarios in %v", len(table), time.Since(start).Round(time.Millisecond))
}

func runScenario(t *testing.T, sc scenario) {
	var subj sideResult
	defer func() {
		if t.Failed() && subj.log != nil && subj.log() != "" {
			t.Logf("%s logged:\n%s", subject.name, subj.log())
		}
	}()
	dd, deliberate := deliberateDifferences[sc.name]
	if deliberate && dd.custom != nil {
		oracle := runSide(t, "overlayfs", sc, sc.ops, overlayMount)
		subj = runSide(t, subject.name, sc, sc.ops, subject.mount)
		dd.custom(t, oracle, subj)
		return
	}
	oracleOps := sc.ops
	if deliberate {
		oracleOps = dd.oracleOps
		oracleOps = append(slices.Clip(oracleOps), sc.ops[1:]...)
	}
	oracle := runSide(t, "overlayfs", sc, oracleOps, overlayMount)
	subj = runSide(t, subject.name, sc, sc.ops, subject.mount)
	// STRATA_DIFF_LOG=1 shows what overlayfs did, to write new scenarios.
	if os.Getenv("STRATA_DIFF_LOG") != "" {
		t.Logf("overlayfs results:\n  %s", strings.Join(oracle.results, "\n  "))
		t.Logf("overlayfs upper:\n  %s", strings.Join(diffTrees(oracle.upperT, nil, "upper", "", 1000), "\n  "))
	}
	if deliberate {
		n := len(dd.oracleOps)
		dd.check(t, oracle.results[:n], subj.results[0])
		compareResults(t, oracle.results[n:], subj.results[1:])
		compareTrees(t, "merged tree", oracle.merged, subj.merged)
		reread := overlayOverUpper(t, subj)
		compareTreesNamed(t, "merged tree of kernel overlayfs (redirect_dir=nofollow) over "+subject.name+"'s upper",
			subject.name, "re-read", subj.merged, reread)
		return
	}
	compareResults(t, oracle.results, subj.results)
	compareTrees(t, "merged tree", oracle.merged, subj.merged)
	compareTrees(t, "upper dir", oracle.upperT, subj.upperT)
}

// runSide builds the scenario's layers and upper afresh, mounts them in a
// subtest (so that the mount is gone when the subtest returns), runs ops,
// and captures the merged tree and then the upper directory.
func runSide(t *testing.T, side string, sc scenario, ops []op, mount mountFn) sideResult {
	base := t.TempDir()
	var res sideResult
	for i, spec := range sc.layers {
		l := filepath.Join(base, fmt.Sprintf("layer%d", i))
		mustMkdir(t, l)
		buildTree(t, l, spec)
		res.layers = append(res.layers, l)
	}
	res.upper = filepath.Join(base, "upper")
	mustMkdir(t, res.upper)
	buildTree(t, res.upper, sc.upper)
	lowersBefore := captureLayers(t, res.layers)
	ok := t.Run(side, func(t *testing.T) {
		m := mount(t, res.layers, res.upper)
		mnt, abort := m.dir, m.abort
		res.log = m.log
		// Non-root operations must be able to reach the mountpoint, whose
		// parent t.TempDir made 0700.
		if err := os.Chmod(filepath.Dir(mnt), 0o755); err != nil {
			t.Fatal(err)
		}
		for _, o := range ops {
			var line string
			withDeadline(t, side, o.name, abort, func() {
				r, err := o.run(mnt)
				line = fmt.Sprintf("%s: %s", o.name, errName(err))
				if err == nil && r != "" {
					line += " " + r
				}
			})
			res.results = append(res.results, line)
		}
		withDeadline(t, side, "capturing the merged tree", abort, func() {
			res.merged = captureTree(t, mnt, viewMerged)
		})
	})
	if !ok {
		t.FailNow()
	}
	res.upperT = captureTree(t, res.upper, viewUpper)
	compareTreesNamed(t, side+" must not change the lower layers", "before", "after",
		lowersBefore, captureLayers(t, res.layers))
	return res
}

// opDeadline bounds one operation: a union that deadlocks must fail its
// scenario, not hang the whole run.
const opDeadline = 20 * time.Second

// withDeadline runs f, and if it has not returned after opDeadline breaks
// the mount with abort (so that stuck system calls return and the mount can
// be torn down) and fails the test.
func withDeadline(t *testing.T, side, what string, abort func(), f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
		return
	case <-time.After(opDeadline):
	}
	if abort != nil {
		abort()
		select {
		case <-done:
		case <-time.After(opDeadline):
		}
	}
	t.Fatalf("%s: %s did not return within %v; mount aborted", side, what, opDeadline)
}

func mustMkdir(t *testing.T, p string) {
	t.Helper()
	if err := os.Mkdir(p, 0o755); err != nil {
		t.Fatal(err)
	}
}

func captureLayers(t *testing.T, layers []string) map[string]string {
	all := map[string]string{}
	for i, l := range layers {
		for k, v := range captureTree(t, l, viewMerged) {
			all[fmt.Sprintf("layer%d/%s", i, k)] = v
		}
	}
	return all
}

// overlayOverUpper mounts kernel overlayfs read-only with the subject's
// upper as the top lower layer and captures the merged tree: the upper
// format must mean to overlayfs what it meant to the subject. Redirects are
// not followed: a consumer of the upper as an OCI layer has none, so the
// upper must spell the renamed tree out in full.
func overlayOverUpper(t *testing.T, s sideResult) map[string]string {
	var tree map[string]string
	t.Run("overlayfs-over-upper", func(t *testing.T) {
		lowers := append(slices.Clip(s.layers), s.upper)
		slices.Reverse(lowers)
		mnt := t.TempDir()
		opts := "lowerdir=" + strings.Join(lowers, ":") + ",redirect_dir=nofollow,index=off,metacopy=off,xino=off"
		if err := unix.Mount("overlay", mnt, "overlay", unix.MS_RDONLY, opts); err != nil {
			t.Fatalf("mount overlay (%s): %v", opts, err)
		}
		defer func() {
			if err := unix.Unmount(mnt, 0); err != nil {
				t.Errorf("unmount %s: %v", mnt, err)
			}
		}()
		tree = captureTree(t, mnt, viewMerged)
	})
	return tree
}

func compareResults(t *testing.T, oracle, subj []string) {
	t.Helper()
	if slices.Equal(oracle, subj) {
		return
	}
	var b strings.Builder
	for i := 0; i < max(len(oracle), len(subj)); i++ {
		o, s := "(none)", "(none)"
		if i < len(oracle) {
			o = oracle[i]
		}
		if i < len(subj) {
			s = subj[i]
		}
		mark := "  "
		if o != s {
			mark = "!="
		}
		fmt.Fprintf(&b, "\n  %s %2d overlayfs: %s\n        %-10s %s", mark, i, o, subject.name+":", s)
	}
	t.Errorf("operation results differ:%s", b.String())
}

func compareTrees(t *testing.T, what string, oracle, subj map[string]string) {
	t.Helper()
	compareTreesNamed(t, what, "overlayfs", subject.name, oracle, subj)
}

func compareTreesNamed(t *testing.T, what, aName, bName string, a, b map[string]string) {
	t.Helper()
	diffs := diffTrees(a, b, aName, bName, 20)
	if len(diffs) > 0 {
		t.Errorf("%s differs at %d paths:\n  %s", what, len(diffs), strings.Join(diffs, "\n  "))
	}
}

// ---- operations ----

func inMnt(root, p string) string { return filepath.Join(root, p) }

func mkop(name string, f func(root string) (string, error)) op { return op{name: name, run: f} }

func opCreate(p, data string, perm uint32) op {
	return mkop(fmt.Sprintf("create %s %04o", p, perm), func(root string) (string, error) {
		return "", writeFile(inMnt(root, p), unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, perm, 0, data)
	})
}

// opOpenCreat opens with O_CREAT but without O_EXCL: it creates or opens.
func opOpenCreat(p string) op {
	return mkop("open O_CREAT "+p, func(root string) (string, error) {
		return "", writeFile(inMnt(root, p), unix.O_RDWR|unix.O_CREAT, 0o640, 0, "")
	})
}

func opWriteAt(p string, off int64, data string) op {
	return mkop(fmt.Sprintf("pwrite %s @%d", p, off), func(root string) (string, error) {
		return "", writeFile(inMnt(root, p), unix.O_WRONLY, 0, off, data)
	})
}

func opOpenTrunc(p, data string) op {
	return mkop("open O_TRUNC "+p, func(root string) (string, error) {
		return "", writeFile(inMnt(root, p), unix.O_WRONLY|unix.O_TRUNC, 0, 0, data)
	})
}

func opAppend(p, data string) op {
	return mkop("append "+p, func(root string) (string, error) {
		return "", writeFile(inMnt(root, p), unix.O_WRONLY|unix.O_APPEND, 0, 0, data)
	})
}

// writeFile opens p with flags and writes data at off (or at the end with
// O_APPEND); an empty data only opens.
func writeFile(p string, flags int, perm uint32, off int64, data string) error {
	fd, err := unix.Open(p, flags|unix.O_CLOEXEC, perm)
	if err != nil {
		return err
	}
	if data != "" {
		if flags&unix.O_APPEND != 0 {
			_, err = unix.Write(fd, []byte(data))
		} else {
			_, err = unix.Pwrite(fd, []byte(data), off)
		}
	}
	return firstErr(err, unix.Close(fd))
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func opTruncate(p string, size int64) op {
	return mkop(fmt.Sprintf("truncate %s %d", p, size), func(root string) (string, error) {
		return "", unix.Truncate(inMnt(root, p), size)
	})
}

func opChmod(p string, perm uint32) op {
	return mkop(fmt.Sprintf("chmod %s %04o", p, perm), func(root string) (string, error) {
		return "", unix.Chmod(inMnt(root, p), perm)
	})
}

func opChown(p string, uid, gid int) op {
	return mkop(fmt.Sprintf("lchown %s %d:%d", p, uid, gid), func(root string) (string, error) {
		return "", unix.Lchown(inMnt(root, p), uid, gid)
	})
}

func opUtimes(p string) op {
	return mkop("utimes "+p, func(root string) (string, error) {
		ts := unix.NsecToTimespec(utimesStamp.UnixNano())
		return "", unix.UtimesNanoAt(unix.AT_FDCWD, inMnt(root, p), []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
	})
}

func opSetxattr(p, name, value string) op {
	return mkop(fmt.Sprintf("setxattr %s %s", p, name), func(root string) (string, error) {
		return "", unix.Lsetxattr(inMnt(root, p), name, []byte(value), 0)
	})
}

func opRemovexattr(p, name string) op {
	return mkop(fmt.Sprintf("removexattr %s %s", p, name), func(root string) (string, error) {
		return "", unix.Lremovexattr(inMnt(root, p), name)
	})
}

func opGetxattr(p, name string) op {
	return mkop(fmt.Sprintf("getxattr %s %s", p, name), func(root string) (string, error) {
		v, err := getXattr(inMnt(root, p), name)
		return fmt.Sprintf("%q", v), err
	})
}

func opListxattr(p string) op {
	return mkop("listxattr "+p, func(root string) (string, error) {
		names, err := listXattrs(inMnt(root, p))
		return strings.Join(names, ","), err
	})
}

func opMknod(p string, mode uint32, major, minor uint32) op {
	return mkop(fmt.Sprintf("mknod %s %o %d:%d", p, mode, major, minor), func(root string) (string, error) {
		return "", unix.Mknod(inMnt(root, p), mode, int(unix.Mkdev(major, minor)))
	})
}

func opMkdir(p string, perm uint32) op {
	return mkop(fmt.Sprintf("mkdir %s %04o", p, perm), func(root string) (string, error) {
		return "", unix.Mkdir(inMnt(root, p), perm)
	})
}

func opSymlink(target, p string) op {
	return mkop(fmt.Sprintf("symlink %s -> %s", p, target), func(root string) (string, error) {
		return "", unix.Symlink(target, inMnt(root, p))
	})
}

func opLink(from, to string) op {
	return mkop(fmt.Sprintf("link %s %s", from, to), func(root string) (string, error) {
		return "", unix.Link(inMnt(root, from), inMnt(root, to))
	})
}

func opUnlink(p string) op {
	return mkop("unlink "+p, func(root string) (string, error) { return "", unix.Unlink(inMnt(root, p)) })
}

func opRmdir(p string) op {
	return mkop("rmdir "+p, func(root string) (string, error) { return "", unix.Rmdir(inMnt(root, p)) })
}

func opRename(from, to string) op {
	return mkop(fmt.Sprintf("rename %s %s", from, to), func(root string) (string, error) {
		return "", unix.Rename(inMnt(root, from), inMnt(root, to))
	})
}

func opRenameat2(from, to string, flags uint, flagName string) op {
	return mkop(fmt.Sprintf("renameat2 %s %s %s", from, to, flagName), func(root string) (string, error) {
		return "", unix.Renameat2(unix.AT_FDCWD, inMnt(root, from), unix.AT_FDCWD, inMnt(root, to), flags)
	})
}

func opReadlink(p string) op {
	return mkop("readlink "+p, func(root string) (string, error) { return os.Readlink(inMnt(root, p)) })
}

// opRead reads a whole file: short contents verbatim, long ones by digest.
func opRead(p string) op {
	return mkop("read "+p, func(root string) (string, error) {
		b, err := os.ReadFile(inMnt(root, p))
		return shortData(b), err
	})
}

func shortData(b []byte) string {
	if len(b) <= 48 {
		return fmt.Sprintf("%q", b)
	}
	return fmt.Sprintf("len=%d sha256=%x", len(b), sha256.Sum256(b))[:40]
}

func opStat(p string) op {
	return mkop("stat "+p, func(root string) (string, error) {
		var st unix.Stat_t
		if err := unix.Lstat(inMnt(root, p), &st); err != nil {
			return "", err
		}
		return fmt.Sprintf("%s %04o %d:%d size=%d nlink=%d", statType(st.Mode), st.Mode&0o7777,
			st.Uid, st.Gid, sizeIfFile(&st), st.Nlink), nil
	})
}

func sizeIfFile(st *unix.Stat_t) int64 {
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return 0
	}
	return st.Size
}

func opReaddir(p string) op {
	return mkop("readdir "+p, func(root string) (string, error) {
		des, err := os.ReadDir(inMnt(root, p))
		var names []string
		for _, de := range des {
			names = append(names, de.Name())
		}
		return strings.Join(names, ","), err
	})
}

// opKeepOpenWrite opens p read-only, writes through a second descriptor
// (forcing a copy-up while the first is open), then reads the first: after
// copy-up an old read descriptor must see the new bytes.
func opKeepOpenWrite(p, data string) op {
	return mkop("read-old-fd-after-copy-up "+p, func(root string) (string, error) {
		f, err := os.Open(inMnt(root, p))
		if err != nil {
			return "", err
		}
		defer f.Close()
		if err := writeFile(inMnt(root, p), unix.O_WRONLY, 0, 0, data); err != nil {
			return "", stepErr{"write", err}
		}
		buf := make([]byte, 64)
		n, err := f.ReadAt(buf, 0)
		if n > 0 {
			err = nil
		}
		if err != nil {
			return "", stepErr{"read old fd", err}
		}
		return fmt.Sprintf("%q", buf[:n]), nil
	})
}

// stepErr names which step of a compound operation failed.
type stepErr struct {
	step string
	err  error
}

func (e stepErr) Error() string { return e.step + ": " + errName(e.err) }

// withSignals runs o on a thread of its own while another goroutine keeps
// sending that thread SIGURG (which the Go runtime handles and ignores).
// Every program gets signals (SIGCHLD, SIGWINCH, Go's own preemption); a
// signal during a FUSE request makes the kernel send FUSE_INTERRUPT, and a
// union must not then fail an operation that overlayfs completes.
func withSignals(o op) op {
	return mkop("under signals: "+o.name, func(root string) (string, error) {
		type result struct {
			s   string
			err error
		}
		ch := make(chan result)
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			pid, tid := unix.Getpid(), unix.Gettid()
			stop, stopped := make(chan struct{}), make(chan struct{})
			go func() {
				defer close(stopped)
				for {
					select {
					case <-stop:
						return
					default:
					}
					unix.Tgkill(pid, tid, unix.SIGURG)
					time.Sleep(20 * time.Microsecond)
				}
			}()
			s, err := o.run(root)
			close(stop)
			<-stopped
			ch <- result{s, err}
		}()
		r := <-ch
		return r.s, r.err
	})
}

// opShell runs a command in the mount root (cp -a, rm -rf).
func opShell(args ...string) op {
	return mkop(strings.Join(args, " "), func(root string) (string, error) {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("%v: %s", err, out)
		}
		return "", nil
	})
}

// asUser runs o with the filesystem credentials of uid:gid (and gid as the
// only supplementary group) on a thread of its own. The thread stays locked
// and dies with its goroutine, so the changed credentials never leak to
// other goroutines.
func asUser(uid, gid int, o op) op {
	return mkop(fmt.Sprintf("as %d:%d %s", uid, gid, o.name), func(root string) (string, error) {
		type result struct {
			s   string
			err error
		}
		ch := make(chan result)
		go func() {
			runtime.LockOSThread()
			if err := unix.Setgroups([]int{gid}); err != nil {
				ch <- result{err: fmt.Errorf("setgroups failed: %v", err)}
				return
			}
			unix.Setfsgid(gid)
			unix.Setfsuid(uid)
			s, err := o.run(root)
			ch <- result{s, err}
		}()
		r := <-ch
		return r.s, r.err
	})
}

// ---- the table ----

// stdLayers is the world most scenarios start from: two lower layers whose
// names cover every kind of entry and every way of being hidden.
func stdLayers() [][]ent {
	l0 := []ent{
		mkDir("d").owner(11, 22).xattr("user.d", "dirval"),
		mkFile("d/a", "lower a\n").mode(0o640).owner(123, 456).xattr("user.foo", "bar").xattr("user.two", "2"),
		mkFile("d/b", "b from layer0\n"),
		mkDir("d/sub"), mkFile("d/sub/c", "c\n"),
		mkDir("e").mode(0o750), mkDir("e2"),
		mkFile("f", "f0\n"), mkFile("g", "g0\n").mode(0o600).owner(5, 6),
		mkFile("big", strings.Repeat("0123456789abcdef", 8192)),
		mkSymlink("ln", "d/a"), mkSymlink("dangling", "nowhere"),
		mkFile("hl1", "shared\n"), mkHardlink("hl2", "hl1"),
		mkChar("null", 1, 3), mkFifo("pipe"),
		mkFile("suid", "#!/bin/sh\n").owner(1000, 1000).mode(0o4755),
		mkDir("sgid").owner(0, 50).mode(0o2777),
		mkDir("tmp").mode(0o1777), mkFile("tmp/rootfile", "r\n"), mkFile("tmp/userfile", "u\n").owner(1000, 1000),
		mkFile("gone", "hidden by layer1\n"), mkDir("gonedir"), mkFile("gonedir/x", "x\n"),
		mkDir("opq"), mkFile("opq/old", "old\n"),
		mkDir("both"), mkFile("both/f", "lower both f\n"), mkFile("both/g", "lower g\n"),
		mkDir("wo"), mkFile("wo/1", "1"), mkFile("wo/2", "2"),
		mkFile("wf", "whited out by the upper\n"),
		mkFile("deep/1/2/3/4/5/6/7/8/9/10/11/leaf", "leaf\n"),
	}
	l1 := []ent{
		mkDir("d").owner(11, 22).xattr("user.d", "top"),
		mkFile("d/b", "b from layer1\n").mode(0o664),
		mkFile("f2", "f2 from layer1\n"),
		mkWhiteout("gone"), mkWhiteout("gonedir"),
		mkOpaque("opq"), mkFile("opq/new", "new\n"),
		mkFile("deep/1/2/3/4/5/6/mid", "mid\n"),
		mkDir("e3").xattr("user.x", "1"),
	}
	return [][]ent{l0, l1}
}

func stdUpper() []ent {
	return []ent{
		mkFile("u", "upper u\n").mode(0o600), mkDir("udir"), mkFile("udir/x", "ux\n"), mkDir("udir/empty"),
		mkDir("both"), mkFile("both/f", "upper both f\n"),
		mkDir("wo"), mkWhiteout("wo/1"), mkWhiteout("wo/2"),
		mkWhiteout("wf"),
	}
}

// std is a scenario on the standard layers and upper.
func std(name string, ops ...op) scenario {
	return scenario{name: name, layers: stdLayers(), upper: stdUpper(), ops: ops}
}

func scenarios() []scenario {
	var all []scenario
	all = append(all, readOnlyScenarios()...)
	all = append(all, writeScenarios()...)
	all = append(all, metadataScenarios()...)
	all = append(all, namespaceScenarios()...)
	all = append(all, renameScenarios()...)
	all = append(all, userScenarios()...)
	all = append(all, interruptedScenarios()...)
	return all
}

func deepPath(n int) string {
	var parts []string
	for i := range n {
		parts = append(parts, fmt.Sprintf("l%d", i))
	}
	return strings.Join(parts, "/")
}

func readOnlyScenarios() []scenario {
	lookups := []op{opStat("gone"), opRead("gone"), opStat("gonedir/x"), opReaddir("."), opReadlink("ln"),
		opReadlink("f"), opRead("ln"), opStat("wf"), opRead("d/b")}
	return []scenario{
		{name: "ro-top-wins", layers: [][]ent{
			{mkFile("f", "bottom\n").mode(0o600).owner(1, 2).xattr("user.a", "1"), mkDir("d").mode(0o700)},
			{mkFile("f", "top wins\n").mode(0o644).owner(3, 4), mkDir("d").mode(0o755).xattr("user.b", "2")},
		}},
		{name: "ro-whiteout-hides-file", layers: [][]ent{
			{mkFile("f", "x"), mkFile("keep", "k")}, {mkWhiteout("f")},
		}, ops: []op{opStat("f"), opRead("f"), opReaddir(".")}},
		{name: "ro-whiteout-hides-dir", layers: [][]ent{
			{mkDir("d"), mkFile("d/x", "x"), mkDir("d/y")}, {mkWhiteout("d")},
		}, ops: []op{opStat("d"), opStat("d/x"), opReaddir(".")}},
		{name: "ro-opaque-cuts-lowers", layers: [][]ent{
			{mkFile("d/a", "a"), mkFile("d/b", "b")}, {mkOpaque("d"), mkFile("d/c", "c")}, {mkFile("d/e", "e")},
		}, ops: []op{opStat("d/a"), opReaddir("d")}},
		{name: "ro-file-hides-dir", layers: [][]ent{
			{mkFile("d/x", "x"), mkDir("d/y")}, {mkFile("d", "now a file\n")},
		}, ops: []op{opStat("d/x"), opRead("d")}},
		{name: "ro-dir-over-file", layers: [][]ent{
			{mkFile("d", "a file\n"), mkFile("k", "k")}, {mkDir("d").mode(0o711), mkFile("d/x", "x")},
		}, ops: []op{opReaddir("d"), opRead("d/x")}},
		{name: "ro-deep-3-layers", layers: [][]ent{
			{mkFile(deepPath(12)+"/f0", "0"), mkFile(deepPath(4)+"/side0", "s0")},
			{mkFile(deepPath(12)+"/f1", "1"), mkWhiteout(deepPath(4) + "/side0"), mkFile(deepPath(8)+"/m", "m")},
			{mkOpaque(deepPath(10)), mkFile(deepPath(12)+"/f0", "top 0"), mkFile(deepPath(11)+"/new", "n")},
		}, ops: []op{opStat(deepPath(12) + "/f1"), opReaddir(deepPath(11))}},
		{name: "ro-five-layers-readd", layers: [][]ent{
			{mkFile("a", "1"), mkFile("b", "1"), mkDir("c"), mkFile("c/x", "1")},
			{mkWhiteout("a"), mkFile("b", "2")},
			{mkFile("a", "3 re-added"), mkWhiteout("c")},
			{mkDir("c").mode(0o700), mkFile("c/y", "4")},
			{mkFile("b", "5").mode(0o755), mkSymlink("s", "b")},
		}, ops: []op{opRead("a"), opReaddir("c"), opStat("c/x")}},
		{name: "ro-special-entries", layers: [][]ent{
			{mkSymlink("abs", "/etc/passwd"), mkSymlink("rel", "../x/y"), mkChar("c", 4, 64), mkBlock("b", 7, 0),
				mkFifo("p"), mkFile("s", "s").mode(0o6755), mkDir("t").mode(0o1777),
				mkFile("x", "x").xattr("user.k", "v").xattr("trusted.strata-test", "t"), mkDir("xd").xattr("user.dk", "dv")},
			{mkFile("owned", "o").owner(4242, 4343).mode(0o400)},
		}, ops: []op{opReadlink("abs"), opReadlink("rel"), opListxattr("x"), opGetxattr("xd", "user.dk"),
			opGetxattr("x", "user.none")}},
		{name: "ro-hardlinks-in-layer", layers: [][]ent{
			{mkFile("h1", "linked\n"), mkHardlink("h2", "h1"), mkDir("d"), mkHardlink("d/h3", "h1")}, {mkFile("other", "o")},
		}, ops: []op{opStat("h1"), opStat("d/h3"), opRead("h2")}},
		{name: "ro-std-lookups", layers: stdLayers(), upper: stdUpper(), ops: lookups},
	}
}

func writeScenarios() []scenario {
	return []scenario{
		std("create-in-lower-dir", opCreate("d/sub/new", "new\n", 0o640), opStat("d/sub/new"), opReaddir("d/sub")),
		std("open-creat-in-lower-dir", opOpenCreat("deep/1/2/3/4/5/6/7/8/9/10/11/made"), opOpenCreat("d/a")),
		std("create-in-upper-dir", opCreate("udir/new", "n", 0o600), opCreate("udir/x", "dup", 0o600)),
		std("create-in-opaque-dir", opCreate("opq/made", "m", 0o644), opReaddir("opq")),
		std("write-lower-file", opWriteAt("d/a", 2, "XY"), opRead("d/a"), opListxattr("d/a"), opStat("d/a")),
		std("write-lower-deep-file", opWriteAt("deep/1/2/3/4/5/6/7/8/9/10/11/leaf", 0, "L"), opRead("deep/1/2/3/4/5/6/mid")),
		std("write-big-lower-file", opWriteAt("big", 100000, "HERE"), opRead("big")),
		std("otrunc-lower-file", opOpenTrunc("d/a", "fresh"), opRead("d/a"), opOpenTrunc("f2", "")),
		std("append-lower-file", opAppend("f", "more\n"), opAppend("d/b", "b+\n"), opRead("f")),
		std("truncate-lower-file", opTruncate("f", 1), opTruncate("big", 200000), opTruncate("f2", 0), opRead("f")),
		std("read-does-not-copy-up", opRead("d/a"), opRead("big"), opStat("d/sub/c"), opReaddir("d"),
			opGetxattr("d/a", "user.foo"), opReadlink("ln")),
		std("read-old-fd-after-copy-up", opKeepOpenWrite("f", "NEW")),
		std("hardlinks-lower-write-one", opWriteAt("hl1", 0, "SHARED"), opRead("hl2"), opStat("hl1"), opStat("hl2")),
		std("hardlinks-lower-chmod-one", opChmod("hl2", 0o600), opStat("hl1")),
		std("write-through-symlink", opWriteAt("ln", 0, "via link"), opRead("d/a"), opReadlink("ln")),
		std("write-fifo-and-device-meta", opChmod("pipe", 0o666), opChown("null", 3, 4), opStat("null")),
	}
}

func metadataScenarios() []scenario {
	return []scenario{
		std("chmod-lower-file", opChmod("d/a", 0o604), opChmod("suid", 0o2711), opStat("d/a")),
		std("chown-lower-file", opChown("d/a", 77, 88), opChown("g", -1, 99), opChown("ln", 5, 5)),
		std("utimes-lower-file", opUtimes("d/a"), opUtimes("ln"), opUtimes("f2")),
		std("metadata-upper-only", opChmod("u", 0o640), opChown("udir", 3, 3), opSetxattr("udir/x", "user.u", "1"),
			opUtimes("u"), opTruncate("udir/x", 1)),
		std("chmod-chown-utimes-lower-dir", opChmod("d/sub", 0o700), opChown("e", 9, 9), opUtimes("e2"),
			opChmod("e3", 0o711)),
		std("setxattr-lower-file", opSetxattr("d/a", "user.new", "v1"), opSetxattr("f", "user.f", ""),
			opListxattr("d/a")),
		std("removexattr-lower-file", opRemovexattr("d/a", "user.foo"), opRemovexattr("f", "user.none"),
			opGetxattr("d/a", "user.foo")),
		std("xattrs-lower-dir", opSetxattr("d", "user.more", "m"), opRemovexattr("d", "user.d"),
			opSetxattr("e3", "user.x", "changed"), opListxattr("d"), opListxattr("e3")),
		std("xattr-flags", mkop("setxattr create existing", func(root string) (string, error) {
			return "", unix.Setxattr(inMnt(root, "d/a"), "user.foo", []byte("x"), unix.XATTR_CREATE)
		}), mkop("setxattr replace missing", func(root string) (string, error) {
			return "", unix.Setxattr(inMnt(root, "f"), "user.nope", []byte("x"), unix.XATTR_REPLACE)
		})),
		std("whited-out-names-enoent", opStat("gone"), opUnlink("gone"), opChmod("gone", 0o600), opRmdir("gonedir"),
			opRename("gone", "g2"), opLink("wf", "wf2"), opOpenTrunc("wf", "x"), opReaddir("wo")),
	}
}

func namespaceScenarios() []scenario {
	return []scenario{
		std("mknod-devices-fifo", opMknod("d/cdev", unix.S_IFCHR|0o640, 5, 1), opMknod("bdev", unix.S_IFBLK|0o600, 8, 3),
			opMknod("fifo2", unix.S_IFIFO|0o622, 0, 0), opMknod("null", unix.S_IFCHR|0o600, 1, 3)),
		std("mkdir", opMkdir("newdir", 0o750), opMkdir("d/sub/nd", 0o700), opMkdir("d", 0o755), opMkdir("gone/x", 0o755)),
		std("mkdir-over-whiteout", opUnlink("d/sub/c"), opRmdir("d/sub"), opMkdir("d/sub", 0o755), opReaddir("d/sub")),
		std("mkdir-over-upper-whiteout", opMkdir("wf", 0o755), opMkdir("gonedir", 0o711), opReaddir("gonedir")),
		std("create-over-whiteout", opCreate("wf", "back\n", 0o644), opCreate("gone", "g\n", 0o600), opRead("gone")),
		std("symlink", opSymlink("d/a", "newln"), opSymlink("x", "d/sub/l"), opSymlink("y", "f"), opReadlink("newln")),
		std("link-upper-file", opLink("u", "u2"), opLink("udir/x", "d/ux"), opStat("u"), opRead("u2")),
		std("link-lower-file", opLink("d/a", "a-link"), opStat("d/a"), opStat("a-link"), opLink("d", "dlink")),
		std("unlink-lower-file", opUnlink("d/a"), opUnlink("f2"), opUnlink("ln"), opReaddir("d")),
		std("unlink-upper-only-file", opUnlink("u"), opUnlink("udir/x"), opReaddir("udir")),
		std("unlink-file-in-both", opUnlink("both/f"), opReaddir("both"), opStat("both/f")),
		std("unlink-then-recreate", opUnlink("d/a"), opCreate("d/a", "again\n", 0o600), opStat("d/a"),
			opListxattr("d/a")),
		std("rmdir-lower-empty-dir", opRmdir("e"), opRmdir("e3"), opStat("e"), opReaddir(".")),
		std("rmdir-lower-nonempty", opRmdir("d"), opRmdir("both"), opRmdir("opq"), opUnlink("d")),
		std("rmdir-all-whited-out", opReaddir("wo"), opRmdir("wo"), opStat("wo")),
		std("rmdir-after-unlinking-all", opUnlink("d/sub/c"), opRmdir("d/sub"), opUnlink("both/f"),
			opUnlink("both/g"), opRmdir("both"), opReaddir(".")),
		std("rmdir-then-recreate-dir", opRmdir("e"), opMkdir("e", 0o700), opCreate("e/x", "x", 0o644)),
		std("rmdir-deep-chain", opUnlink("deep/1/2/3/4/5/6/7/8/9/10/11/leaf"),
			opRmdir("deep/1/2/3/4/5/6/7/8/9/10/11"), opRmdir("deep/1/2/3/4/5/6/7/8/9/10"),
			opReaddir("deep/1/2/3/4/5/6/7/8/9")),
	}
}

func renameScenarios() []scenario {
	return []scenario{
		std("rename-lower-file", opRename("d/a", "d/a2"), opRead("d/a2"), opStat("d/a")),
		std("rename-upper-file", opRename("u", "u-moved"), opRename("udir/x", "d/x")),
		std("rename-over-lower-file", opRename("u", "f"), opRename("d/b", "g"), opRead("f"), opRead("g")),
		std("rename-dir-over-empty-dir", opRename("udir/empty", "e"), opMkdir("nd", 0o755), opRename("nd", "e2"),
			opReaddir("e")),
		std("rename-over-nonempty-dir", opMkdir("nd", 0o755), opRename("nd", "d"), opRename("nd", "both")),
		std("rename-upper-only-dir", opRename("udir", "udir2"), opReaddir("udir2"), opMkdir("m", 0o755),
			opCreate("m/f", "f", 0o644), opRename("m", "d/m")),
		std("rename-lower-file-into-lower-dir", opRename("d/a", "e/a"), opRename("f", "d/sub/f"), opReaddir("e")),
		std("rename-file-dir-mismatch", opRename("f", "e"), opRename("udir", "u"), opRename("f", "f")),
		std("rename-noreplace", opRenameat2("u", "f", unix.RENAME_NOREPLACE, "NOREPLACE"),
			opRenameat2("d/a", "u", unix.RENAME_NOREPLACE, "NOREPLACE"),
			opRenameat2("f", "fresh", unix.RENAME_NOREPLACE, "NOREPLACE"),
			opRenameat2("u", "gone", unix.RENAME_NOREPLACE, "NOREPLACE")),
		std("rename-exchange-upper-files", opCreate("p", "p", 0o600),
			opRenameat2("u", "p", unix.RENAME_EXCHANGE, "EXCHANGE"), opRead("u"), opRead("p")),
		std("rename-exchange-lower-upper", opRenameat2("d/a", "u", unix.RENAME_EXCHANGE, "EXCHANGE"),
			opRead("u"), opRead("d/a"), opRenameat2("f", "missing", unix.RENAME_EXCHANGE, "EXCHANGE")),
		std("rename-onto-whiteout-name", opRename("u", "gone"), opRename("udir", "wf"), opReaddir(".")),
		std("rename-then-recreate", opRename("f", "f-old"), opCreate("f", "new f\n", 0o644), opRead("f-old")),
		std("rename-lower-dir", opRename("d", "dnew"), opReaddir("dnew"), opRead("dnew/a"),
			opListxattr("dnew"), opCreate("dnew/made", "m", 0o644), opStat("d"), opStat("dnew/sub/c")),
		std("rename-merged-dir", opRename("both", "both2"), opReaddir("both2"), opRead("both2/g"),
			opStat("both")),
	}
}

// interruptedScenarios repeat copy-up-heavy operations under a storm of
// signals; see withSignals.
func interruptedScenarios() []scenario {
	var ops []op
	for _, o := range []op{opChmod("d/a", 0o600), opRename("f", "d/sub/f"), opUnlink("deep/1/2/3/4/5/6/7/8/9/10/11/leaf"),
		opRmdir("e"), opSetxattr("g", "user.s", "1"), opWriteAt("big", 5, "W"), opMkdir("d/sub/nd", 0o755),
		opLink("d/b", "b3"), opRenameat2("f2", "u", unix.RENAME_EXCHANGE, "EXCHANGE"), opRmdir("wo"),
		opReaddir("d"), opRead("big"), opCreate("e2/new", "n", 0o644)} {
		ops = append(ops, withSignals(o))
	}
	return []scenario{std("interrupted-by-signals", ops...),
		// A subtree's copy-up takes long enough for signals to land in it.
		std("rename-lower-dir-interrupted", withSignals(opRename("d", "dnew")), opReaddir("dnew"),
			opRead("dnew/a"), opStat("d"), opStat("dnew/sub/c"))}
}

// userScenarios run operations with a non-root uid, through fsuid/fsgid.
func userScenarios() []scenario {
	u := func(o op) op { return asUser(1000, 1000, o) }
	return []scenario{
		std("user-create-world-writable", u(opCreate("tmp/mine", "m", 0o644)), u(opMkdir("tmp/mydir", 0o755)),
			opStat("tmp/mine")),
		std("user-create-in-setgid-dir", u(opCreate("sgid/f", "f", 0o664)), u(opMkdir("sgid/sub", 0o775)),
			u(opCreate("sgid/sub/g", "g", 0o644)), opStat("sgid/sub")),
		std("user-permission-denied", u(opCreate("d/nope", "n", 0o644)), u(opWriteAt("f", 0, "x")),
			u(opUnlink("tmp/rootfile")), u(opUnlink("tmp/userfile")), u(opChmod("f", 0o777)),
			u(opRead("g")), u(opMkdir("e/x", 0o755)), u(opSetxattr("f", "user.x", "x"))),
		std("user-write-clears-setuid", u(opWriteAt("suid", 0, "#")), opStat("suid")),
		std("user-chown-and-chmod-own", u(opChmod("tmp/userfile", 0o600)), u(opChown("tmp/userfile", -1, 1000)),
			u(opChown("tmp/userfile", 0, -1)), u(opSetxattr("tmp/userfile", "user.mine", "1")),
			u(opUtimes("tmp/userfile"))),
		std("user-rename-in-sticky-dir", u(opRename("tmp/rootfile", "tmp/r2")),
			u(opRename("tmp/userfile", "tmp/u2")), u(opReaddir("tmp"))),
	}
}
