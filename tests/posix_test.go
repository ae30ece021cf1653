package tests

// POSIX behaviour of a writable (and a read-only) union, checked with real
// system calls. Every test runs first on kernel overlayfs over the same
// layers, so an expectation that the kernel's own union does not meet fails
// there, not only on strata.

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

func TestPosixOpenAppend(t *testing.T) {
	c := posixCase{layers: []layerSpec{{"log": "HEAD\n"}}}
	c.run(t, func(t *testing.T, fs posixFS) {
		f, err := os.OpenFile(fs.p("log"), os.O_WRONLY|os.O_APPEND, 0)
		must(t, err)
		// A seek to 0 must not matter: O_APPEND writes at the end.
		_, err = f.Seek(0, 0)
		must(t, err)
		_, err = f.Write([]byte("one\n"))
		must(t, err)
		must(t, f.Close())
		wantFile(t, fs.p("log"), "HEAD\none\n")
		wantFile(t, filepath.Join(fs.Layers[0], "log"), "HEAD\n")
		appendConcurrently(t, fs.p("log"), len("HEAD\none\n"))
	})
}

// appendConcurrently has 8 writers, each with its own O_APPEND descriptor,
// append fixed-size records and checks that none was lost or torn.
func appendConcurrently(t *testing.T, path string, base int) {
	const writers, records, size = 8, 100, 32
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				errs <- err
				return
			}
			defer f.Close()
			for r := 0; r < records; r++ {
				rec := fmt.Sprintf("writer %d record %04d", w, r)
				rec += strings.Repeat(".", size-1-len(rec)) + "\n"
				if _, err := f.Write([]byte(rec)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("appender: %v", err)
	}
	data, err := os.ReadFile(path)
	must(t, err)
	if want := base + writers*records*size; len(data) != want {
		t.Fatalf("after concurrent appends size is %d, want %d", len(data), want)
	}
	next := make([]int, writers)
	for off := base; off < len(data); off += size {
		var w, r int
		_, err := fmt.Sscanf(string(data[off:off+size]), "writer %d record %d", &w, &r)
		if err != nil || w < 0 || w >= writers || r != next[w] {
			t.Fatalf("record at %d is %q: torn, lost or out of order", off, data[off:off+size])
		}
		next[w]++
	}
}

func TestPosixOpenTrunc(t *testing.T) {
	c := posixCase{layers: []layerSpec{{"low": "lower data"}}}
	c.run(t, func(t *testing.T, fs posixFS) {
		must(t, os.WriteFile(fs.p("up"), []byte("upper data"), 0o644))
		for _, name := range []string{"up", "low"} {
			f, err := os.OpenFile(fs.p(name), os.O_RDWR|os.O_TRUNC, 0)
			must(t, err)
			var st unix.Stat_t
			must(t, unix.Fstat(int(f.Fd()), &st))
			if st.Size != 0 {
				t.Errorf("%s: fstat after O_TRUNC: size %d, want 0", name, st.Size)
			}
			must(t, f.Close())
			if st := lstat(t, fs.p(name)); st.Size != 0 {
				t.Errorf("%s: stat after O_TRUNC: size %d, want 0", name, st.Size)
			}
			wantFile(t, fs.p(name), "")
			wantFile(t, filepath.Join(fs.Upper, name), "")
		}
		wantFile(t, filepath.Join(fs.Layers[0], "low"), "lower data")
	})
}

func TestPosixOpenExcl(t *testing.T) {
	c := posixCase{layers: []layerSpec{
		{"low": "L", "gone": "G", "del": "D", "dir/": ""},
		{"gone": "whiteout:"},
	}}
	c.run(t, func(t *testing.T, fs posixFS) {
		must(t, os.WriteFile(fs.p("up"), []byte("U"), 0o644))
		must(t, os.Remove(fs.p("del")))
		excl := os.O_RDWR | os.O_CREATE | os.O_EXCL
		for _, name := range []string{"low", "up", "dir"} {
			_, err := os.OpenFile(fs.p(name), excl, 0o644)
			wantErrno(t, err, unix.EEXIST, "O_EXCL on existing "+name)
		}
		// "gone" is whited out by a layer, "del" by an unlink through the
		// mount: both names are free.
		for _, name := range []string{"gone", "del"} {
			f, err := os.OpenFile(fs.p(name), excl, 0o644)
			if err != nil {
				t.Errorf("O_EXCL on whited-out %s: %v", name, err)
				continue
			}
			_, err = f.Write([]byte("new " + name))
			must(t, err)
			must(t, f.Close())
			wantFile(t, fs.p(name), "new "+name)
			_, err = os.OpenFile(fs.p(name), excl, 0o644)
			wantErrno(t, err, unix.EEXIST, "O_EXCL on re-created "+name)
		}
		wantFile(t, filepath.Join(fs.Layers[0], "del"), "D")
	})
}

func TestPosixOpenCreateMode(t *testing.T) {
	c := posixCase{layers: []layerSpec{{"dir/": ""}}}
	c.run(t, func(t *testing.T, fs posixFS) {
		for _, umask := range []int{0, 0o027} {
			withUmask(t, umask)
			for _, mode := range []uint32{0o600, 0o640, 0o704, 0o755, 0o777} {
				want := mode &^ uint32(umask)
				name := fmt.Sprintf("f-%o-%o", umask, mode)
				f, err := os.OpenFile(fs.p("dir", name), os.O_RDWR|os.O_CREATE|os.O_EXCL, os.FileMode(mode))
				must(t, err)
				must(t, f.Close())
				if got := lstat(t, fs.p("dir", name)).Mode & 0o7777; got != want {
					t.Errorf("umask %o: created file with mode %o: has %o, want %o", umask, mode, got, want)
				}
				if got := lstat(t, filepath.Join(fs.Upper, "dir", name)).Mode & 0o7777; got != want {
					t.Errorf("umask %o: upper copy of file created with mode %o has %o, want %o", umask, mode, got, want)
				}
				dname := "d" + name
				must(t, os.Mkdir(fs.p("dir", dname), os.FileMode(mode)))
				if got := lstat(t, fs.p("dir", dname)).Mode & 0o7777; got != want {
					t.Errorf("umask %o: mkdir with mode %o: has %o, want %o", umask, mode, got, want)
				}
			}
		}
	})
}

func TestPosixOpenDirectoryAndNoFollow(t *testing.T) {
	c := posixCase{layers: []layerSpec{{
		"file": "x", "dir/": "", "lnk": "symlink:file", "dlnk": "symlink:dir",
	}}}
	c.run(t, func(t *testing.T, fs posixFS) {
		must(t, os.WriteFile(fs.p("ufile"), []byte("u"), 0o644))
		must(t, os.Symlink("ufile", fs.p("ulnk")))
		for _, name := range []string{"file", "ufile"} {
			_, err := unix.Open(fs.p(name), unix.O_RDONLY|unix.O_DIRECTORY, 0)
			wantErrno(t, err, unix.ENOTDIR, "O_DIRECTORY on file "+name)
		}
		for _, name := range []string{"dir", "dlnk"} {
			fd, err := unix.Open(fs.p(name), unix.O_RDONLY|unix.O_DIRECTORY, 0)
			if err != nil {
				t.Errorf("O_DIRECTORY on %s: %v", name, err)
				continue
			}
			unix.Close(fd)
		}
		for _, name := range []string{"lnk", "ulnk", "dlnk"} {
			_, err := unix.Open(fs.p(name), unix.O_RDONLY|unix.O_NOFOLLOW, 0)
			wantErrno(t, err, unix.ELOOP, "O_NOFOLLOW on symlink "+name)
		}
		fd, err := unix.Open(fs.p("file"), unix.O_RDONLY|unix.O_NOFOLLOW, 0)
		if err != nil {
			t.Errorf("O_NOFOLLOW on a plain file: %v", err)
		} else {
			unix.Close(fd)
		}
	})
}

func TestPosixUnlinkOpenFile(t *testing.T) {
	c := posixCase{layers: []layerSpec{{"low": "lower data", "lowro": "read only"}}}
	c.run(t, func(t *testing.T, fs posixFS) {
		must(t, os.WriteFile(fs.p("up"), []byte("upper data"), 0o644))
		t.Run("upper", func(t *testing.T) { unlinkOpenRW(t, fs, "up", "upper data") })
		t.Run("lower-copied-up", func(t *testing.T) { unlinkOpenRW(t, fs, "low", "lower data") })
		t.Run("lower-read-only", func(t *testing.T) {
			f, err := os.Open(fs.p("lowro"))
			must(t, err)
			defer f.Close()
			must(t, os.Remove(fs.p("lowro")))
			wantGone(t, fs, "lowro")
			buf := make([]byte, 64)
			n, err := f.ReadAt(buf, 0)
			if string(buf[:n]) != "read only" {
				t.Errorf("read of unlinked lower file: %q (%v), want %q", buf[:n], err, "read only")
			}
			wantFile(t, filepath.Join(fs.Layers[0], "lowro"), "read only")
		})
	})
}

// unlinkOpenRW opens name for writing, unlinks it, and checks the descriptor
// still holds the file while the name is gone and free for a new file.
func unlinkOpenRW(t *testing.T, fs posixFS, name, content string) {
	f, err := os.OpenFile(fs.p(name), os.O_RDWR, 0)
	must(t, err)
	defer f.Close()
	must(t, os.Remove(fs.p(name)))
	wantGone(t, fs, name)
	buf := make([]byte, 64)
	n, _ := f.ReadAt(buf, 0)
	if string(buf[:n]) != content {
		t.Errorf("read after unlink: %q, want %q", buf[:n], content)
	}
	_, err = f.WriteAt([]byte("+more"), int64(len(content)))
	must(t, err)
	n, _ = f.ReadAt(buf, 0)
	if string(buf[:n]) != content+"+more" {
		t.Errorf("read after write to unlinked file: %q, want %q", buf[:n], content+"+more")
	}
	var st unix.Stat_t
	must(t, unix.Fstat(int(f.Fd()), &st))
	if st.Nlink != 0 || st.Size != int64(len(content)+5) {
		t.Errorf("fstat of unlinked file: nlink %d size %d, want nlink 0 size %d", st.Nlink, st.Size, len(content)+5)
	}
	// A new file under the old name must not be the open one.
	must(t, os.WriteFile(fs.p(name), []byte("replacement"), 0o644))
	n, _ = f.ReadAt(buf, 0)
	if string(buf[:n]) != content+"+more" {
		t.Errorf("old descriptor after the name was re-created: %q, want %q", buf[:n], content+"+more")
	}
	wantFile(t, fs.p(name), "replacement")
}

func wantGone(t *testing.T, fs posixFS, name string) {
	t.Helper()
	_, err := os.Lstat(fs.p(name))
	wantErrno(t, err, unix.ENOENT, "lstat of unlinked "+name)
	names, err := os.ReadDir(fs.Dir)
	must(t, err)
	for _, e := range names {
		if e.Name() == name {
			t.Errorf("unlinked %s still listed by readdir", name)
		}
	}
}

func TestPosixRenameOverOpenFile(t *testing.T) {
	c := posixCase{layers: []layerSpec{{"lowdst": "old lower", "lowsrc": "new from lower"}}}
	c.run(t, func(t *testing.T, fs posixFS) {
		must(t, os.WriteFile(fs.p("updst"), []byte("old upper"), 0o644))
		must(t, os.WriteFile(fs.p("upsrc"), []byte("new from upper"), 0o644))
		for _, tc := range []struct{ src, dst, old, new string }{
			{"upsrc", "lowdst", "old lower", "new from upper"},
			{"lowsrc", "updst", "old upper", "new from lower"},
		} {
			f, err := os.Open(fs.p(tc.dst))
			must(t, err)
			must(t, os.Rename(fs.p(tc.src), fs.p(tc.dst)))
			buf := make([]byte, 64)
			n, _ := f.ReadAt(buf, 0)
			if string(buf[:n]) != tc.old {
				t.Errorf("rename %s over open %s: old descriptor reads %q, want %q", tc.src, tc.dst, buf[:n], tc.old)
			}
			f.Close()
			wantFile(t, fs.p(tc.dst), tc.new)
			_, err = os.Lstat(fs.p(tc.src))
			wantErrno(t, err, unix.ENOENT, "lstat of renamed-away "+tc.src)
		}
		wantFile(t, filepath.Join(fs.Layers[0], "lowdst"), "old lower")
	})
}

func TestPosixRenameOverFileOpenForWrite(t *testing.T) {
	c := posixCase{layers: []layerSpec{{"dst": "old"}}}
	c.run(t, func(t *testing.T, fs posixFS) {
		f, err := os.OpenFile(fs.p("dst"), os.O_RDWR, 0)
		must(t, err)
		defer f.Close()
		must(t, os.WriteFile(fs.p("src"), []byte("new"), 0o644))
		must(t, os.Rename(fs.p("src"), fs.p("dst")))
		// Writes through the old descriptor go to the replaced file, not
		// to whatever now has its name.
		_, err = f.WriteAt([]byte("OLD"), 0)
		must(t, err)
		wantFile(t, fs.p("dst"), "new")
		wantFile(t, filepath.Join(fs.Upper, "dst"), "new")
	})
}

const gib = int64(1) << 30

func TestPosixSparseFile(t *testing.T) {
	c := posixCase{layers: []layerSpec{{}}}
	c.run(t, func(t *testing.T, fs posixFS) {
		f, err := os.OpenFile(fs.p("sparse"), os.O_RDWR|os.O_CREATE, 0o644)
		must(t, err)
		defer f.Close()
		_, err = f.WriteAt([]byte("hello"), gib)
		must(t, err)
		fi, err := f.Stat()
		must(t, err)
		if fi.Size() != gib+5 {
			t.Errorf("size after write at 1 GiB: %d, want %d", fi.Size(), gib+5)
		}
		for _, off := range []int64{0, gib / 2, gib - 4096} {
			buf := make([]byte, 4096)
			if _, err := f.ReadAt(buf, off); err != nil || !isZero(buf) {
				t.Errorf("read of hole at %d: err %v, zero %v", off, err, isZero(buf))
			}
		}
		buf := make([]byte, 5)
		if _, err := f.ReadAt(buf, gib); err != nil || string(buf) != "hello" {
			t.Errorf("read at 1 GiB: %q (%v)", buf, err)
		}
		checkSeekDataHole(t, int(f.Fd()), gib, gib+5)
		if st := lstat(t, filepath.Join(fs.Upper, "sparse")); st.Blocks*512 > 1<<20 {
			t.Errorf("upper file uses %d bytes of disk: the hole was filled", st.Blocks*512)
		}
	})
}

// checkSeekDataHole accepts either real hole reporting (data starts at
// dataAt) or the generic fallback (all data, one hole at EOF); anything
// else is wrong.
func checkSeekDataHole(t *testing.T, fd int, dataAt, size int64) {
	t.Helper()
	data, err := unix.Seek(fd, 0, unix.SEEK_DATA)
	must(t, err)
	hole, err := unix.Seek(fd, 0, unix.SEEK_HOLE)
	must(t, err)
	switch {
	case data == dataAt && hole == 0:
	case data == 0 && hole == size:
	default:
		t.Errorf("SEEK_DATA from 0 = %d, SEEK_HOLE from 0 = %d: want %d/0 or 0/%d", data, hole, dataAt, size)
	}
	if hole, err := unix.Seek(fd, dataAt, unix.SEEK_HOLE); err != nil || hole != size {
		t.Errorf("SEEK_HOLE from %d = %d (%v), want %d (EOF)", dataAt, hole, err, size)
	}
	_, err = unix.Seek(fd, size+1, unix.SEEK_DATA)
	wantErrno(t, err, unix.ENXIO, "SEEK_DATA past EOF")
}

func TestPosixSparseCopyUp(t *testing.T) {
	const size = 64 << 20
	c := posixCase{layers: []layerSpec{{}}, prepare: func(t *testing.T, layers []string, _ string) {
		f, err := os.Create(filepath.Join(layers[0], "sparse"))
		must(t, err)
		_, err = f.WriteAt([]byte("end"), size-3)
		must(t, err)
		must(t, f.Close())
	}}
	c.run(t, func(t *testing.T, fs posixFS) {
		f, err := os.OpenFile(fs.p("sparse"), os.O_RDWR, 0)
		must(t, err)
		defer f.Close()
		_, err = f.WriteAt([]byte("start"), 0)
		must(t, err)
		buf := make([]byte, 3)
		if _, err := f.ReadAt(buf, size-3); err != nil || string(buf) != "end" {
			t.Errorf("read of tail after copy-up: %q (%v)", buf, err)
		}
		st := lstat(t, filepath.Join(fs.Upper, "sparse"))
		if st.Size != size || st.Blocks*512 > 4<<20 {
			t.Errorf("copied-up sparse file: size %d, %d bytes on disk; want size %d and its hole kept", st.Size, st.Blocks*512, size)
		}
	})
}

func TestPosixLargeFileOffsets(t *testing.T) {
	c := posixCase{layers: []layerSpec{{}}}
	c.run(t, func(t *testing.T, fs posixFS) {
		f, err := os.OpenFile(fs.p("big"), os.O_RDWR|os.O_CREATE, 0o644)
		must(t, err)
		defer f.Close()
		writes := map[int64]string{4*gib - 3: "across4G", 5 * gib: "five gigs"}
		for off, s := range writes {
			n, err := unix.Pwrite(int(f.Fd()), []byte(s), off)
			if err != nil || n != len(s) {
				t.Fatalf("pwrite at %d: %d, %v", off, n, err)
			}
		}
		for off, s := range writes {
			buf := make([]byte, len(s))
			n, err := unix.Pread(int(f.Fd()), buf, off)
			if err != nil || string(buf[:n]) != s {
				t.Errorf("pread at %d: %q (%v), want %q", off, buf[:n], err, s)
			}
		}
		want := 5*gib + int64(len("five gigs"))
		if st := lstat(t, fs.p("big")); st.Size != want {
			t.Errorf("size %d, want %d", st.Size, want)
		}
		if st := lstat(t, filepath.Join(fs.Upper, "big")); st.Size != want {
			t.Errorf("upper file size %d, want %d", st.Size, want)
		}
	})
}

func TestPosixNameLength(t *testing.T) {
	n255 := func(c string) string { return strings.Repeat(c, 255) }
	c := posixCase{layers: []layerSpec{{n255("l"): "lower", "exists": "e"}}}
	c.run(t, func(t *testing.T, fs posixFS) {
		wantFile(t, fs.p(n255("l")), "lower")
		must(t, os.WriteFile(fs.p(n255("f")), []byte("upper"), 0o644))
		must(t, os.Mkdir(fs.p(n255("d")), 0o755))
		must(t, os.Symlink("exists", fs.p(n255("s"))))
		must(t, os.Rename(fs.p("exists"), fs.p(n255("r"))))
		listed := map[string]bool{}
		entries, err := os.ReadDir(fs.Dir)
		must(t, err)
		for _, e := range entries {
			listed[e.Name()] = true
		}
		for _, c := range []string{"l", "f", "d", "s", "r"} {
			if !listed[n255(c)] {
				t.Errorf("255-byte name of %s missing from readdir", c)
			}
		}
		wantFile(t, fs.p(n255("f")), "upper")
		must(t, os.Remove(fs.p(n255("l"))))
		_, err = os.Lstat(fs.p(n255("l")))
		wantErrno(t, err, unix.ENOENT, "lstat of removed 255-byte lower name")

		long := strings.Repeat("x", 256)
		_, err = os.OpenFile(fs.p(long), os.O_RDWR|os.O_CREATE, 0o644)
		wantErrno(t, err, unix.ENAMETOOLONG, "create 256-byte name")
		_, err = os.Lstat(fs.p(long))
		wantErrno(t, err, unix.ENAMETOOLONG, "lstat 256-byte name")
		wantErrno(t, os.Mkdir(fs.p(long), 0o755), unix.ENAMETOOLONG, "mkdir 256-byte name")
		wantErrno(t, os.Symlink("x", fs.p(long)), unix.ENAMETOOLONG, "symlink 256-byte name")
		wantErrno(t, os.Rename(fs.p(n255("f")), fs.p(long)), unix.ENAMETOOLONG, "rename to 256-byte name")
		wantErrno(t, os.Link(fs.p(n255("f")), fs.p(long)), unix.ENAMETOOLONG, "link to 256-byte name")
	})
}

func TestPosixConcurrentPwrite(t *testing.T) {
	const writers, chunk, chunks = 8, 4096, 64
	c := posixCase{layers: []layerSpec{{}}}
	c.run(t, func(t *testing.T, fs posixFS) {
		f, err := os.OpenFile(fs.p("shared"), os.O_RDWR|os.O_CREATE, 0o644)
		must(t, err)
		pattern := func(w, i int) []byte {
			return bytes.Repeat([]byte{byte('A' + w), byte(i)}, chunk/2)
		}
		var wg sync.WaitGroup
		for w := 0; w < writers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < chunks; i++ {
					off := int64((w*chunks + i) * chunk)
					if _, err := f.WriteAt(pattern(w, i), off); err != nil {
						t.Errorf("writer %d: %v", w, err)
						return
					}
				}
			}()
		}
		wg.Wait()
		must(t, f.Close())
		for _, path := range []string{fs.p("shared"), filepath.Join(fs.Upper, "shared")} {
			data, err := os.ReadFile(path)
			must(t, err)
			if len(data) != writers*chunks*chunk {
				t.Fatalf("%s: size %d, want %d", path, len(data), writers*chunks*chunk)
			}
			for w := 0; w < writers; w++ {
				for i := 0; i < chunks; i++ {
					off := (w*chunks + i) * chunk
					if !bytes.Equal(data[off:off+chunk], pattern(w, i)) {
						t.Fatalf("%s: chunk %d of writer %d is wrong", path, i, w)
					}
				}
			}
		}
	})
}

func TestPosixConcurrentCreate(t *testing.T) {
	const writers, files = 8, 200
	c := posixCase{layers: []layerSpec{{"d/lower1": "lower1", "d/lower2": "lower2"}}}
	c.run(t, func(t *testing.T, fs posixFS) {
		var wg sync.WaitGroup
		for w := 0; w < writers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < files; i++ {
					name := fmt.Sprintf("w%d-%03d", w, i)
					if err := os.WriteFile(fs.p("d", name), []byte(name), 0o644); err != nil {
						t.Errorf("create %s: %v", name, err)
						return
					}
				}
			}()
		}
		wg.Wait()
		entries, err := os.ReadDir(fs.p("d"))
		must(t, err)
		if len(entries) != writers*files+2 {
			t.Errorf("readdir after concurrent creates: %d entries, want %d", len(entries), writers*files+2)
		}
		for _, e := range entries {
			want := e.Name()
			if strings.HasPrefix(want, "lower") {
				continue
			}
			wantFile(t, fs.p("d", e.Name()), want)
		}
		upper, err := os.ReadDir(filepath.Join(fs.Upper, "d"))
		must(t, err)
		if len(upper) != writers*files {
			t.Errorf("upper dir holds %d entries, want %d", len(upper), writers*files)
		}
	})
}

func TestPosixFsync(t *testing.T) {
	c := posixCase{layers: []layerSpec{{"low": "lower", "dir/": ""}}}
	c.run(t, func(t *testing.T, fs posixFS) {
		data := bytes.Repeat([]byte("fsync me "), 100000)
		for _, name := range []string{"new", "low"} {
			f, err := os.OpenFile(fs.p(name), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
			must(t, err)
			_, err = f.Write(data)
			must(t, err)
			if err := unix.Fsync(int(f.Fd())); err != nil {
				t.Errorf("fsync %s: %v", name, err)
			}
			wantFile(t, filepath.Join(fs.Upper, name), string(data))
			_, err = f.WriteAt([]byte("DATASYNC"), 0)
			must(t, err)
			if err := unix.Fdatasync(int(f.Fd())); err != nil {
				t.Errorf("fdatasync %s: %v", name, err)
			}
			wantFile(t, filepath.Join(fs.Upper, name), "DATASYNC"+string(data[8:]))
			f.Close()
		}
		for _, dir := range []string{fs.Dir, fs.p("dir")} {
			d, err := os.Open(dir)
			must(t, err)
			if err := unix.Fsync(int(d.Fd())); err != nil {
				t.Errorf("fsync of directory %s: %v", dir, err)
			}
			d.Close()
		}
	})
}

func TestPosixReaddirTypes(t *testing.T) {
	c := posixCase{layers: []layerSpec{{"d/file": "f", "d/sub/": "", "d/link": "symlink:file"}},
		prepare: func(t *testing.T, layers []string, _ string) {
			d := filepath.Join(layers[0], "d")
			must(t, unix.Mkfifo(filepath.Join(d, "fifo"), 0o644))
			must(t, unix.Mknod(filepath.Join(d, "chr"), unix.S_IFCHR|0o644, int(unix.Mkdev(1, 3))))
			must(t, unix.Mknod(filepath.Join(d, "blk"), unix.S_IFBLK|0o644, int(unix.Mkdev(7, 0))))
			must(t, unix.Mknod(filepath.Join(d, "sock"), unix.S_IFSOCK|0o644, 0))
		}}
	c.run(t, func(t *testing.T, fs posixFS) {
		d := fs.p("d")
		must(t, os.WriteFile(filepath.Join(d, "ufile"), nil, 0o644))
		must(t, os.Mkdir(filepath.Join(d, "usub"), 0o755))
		must(t, os.Symlink("ufile", filepath.Join(d, "ulink")))
		must(t, unix.Mkfifo(filepath.Join(d, "ufifo"), 0o644))
		must(t, unix.Mknod(filepath.Join(d, "uchr"), unix.S_IFCHR|0o644, int(unix.Mkdev(1, 3))))
		fd, err := unix.Open(d, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		must(t, err)
		defer unix.Close(fd)
		seen := map[string]bool{}
		for _, e := range getdentsAll(t, fd, 1<<16) {
			seen[e.Name] = true
			if e.Name == "." || e.Name == ".." {
				if e.Type != unix.DT_DIR {
					t.Errorf("%q has d_type %d, want DT_DIR", e.Name, e.Type)
				}
				continue
			}
			st := lstat(t, filepath.Join(d, e.Name))
			if want := dtype(st.Mode); e.Type != want {
				t.Errorf("%s: d_type %d, want %d (mode %o)", e.Name, e.Type, want, st.Mode)
			}
			if e.Ino != st.Ino {
				t.Errorf("%s: d_ino %d differs from st_ino %d", e.Name, e.Ino, st.Ino)
			}
		}
		for _, name := range []string{".", "..", "file", "sub", "link", "fifo", "chr", "blk", "sock",
			"ufile", "usub", "ulink", "ufifo", "uchr"} {
			if !seen[name] {
				t.Errorf("readdir of merged dir lacks %q", name)
			}
		}
		if len(seen) != 14 {
			t.Errorf("readdir returned %d names, want 14: %v", len(seen), seen)
		}
	})
}

func dtype(mode uint32) uint8 {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return unix.DT_REG
	case unix.S_IFDIR:
		return unix.DT_DIR
	case unix.S_IFLNK:
		return unix.DT_LNK
	case unix.S_IFIFO:
		return unix.DT_FIFO
	case unix.S_IFCHR:
		return unix.DT_CHR
	case unix.S_IFBLK:
		return unix.DT_BLK
	case unix.S_IFSOCK:
		return unix.DT_SOCK
	}
	return unix.DT_UNKNOWN
}

func TestPosixReaddirSeek(t *testing.T) {
	spec := layerSpec{}
	for i := 0; i < 40; i++ {
		spec[fmt.Sprintf("d/lower-entry-%02d", i)] = "l"
	}
	c := posixCase{layers: []layerSpec{spec}}
	c.run(t, func(t *testing.T, fs posixFS) {
		for i := 0; i < 30; i++ {
			must(t, os.WriteFile(fs.p("d", fmt.Sprintf("upper-entry-%02d", i)), nil, 0o644))
		}
		for i := 0; i < 40; i += 7 {
			must(t, os.Remove(fs.p("d", fmt.Sprintf("lower-entry-%02d", i))))
		}
		fd, err := unix.Open(fs.p("d"), unix.O_RDONLY|unix.O_DIRECTORY, 0)
		must(t, err)
		defer unix.Close(fd)
		full := getdentsAll(t, fd, 1<<16)
		if len(full) != 2+40-6+30 {
			t.Fatalf("readdir: %d entries, want %d", len(full), 2+40-6+30)
		}
		seekDirAndCompare(t, fd, full)
	})
}

// seekDirAndCompare reads part of the directory with small getdents calls,
// checks that telldir matches the last d_off, and that seeking to a d_off
// (seekdir) resumes at the entry after it, as does seeking back to 0.
func seekDirAndCompare(t *testing.T, fd int, full []dirent) {
	t.Helper()
	_, err := unix.Seek(fd, 0, unix.SEEK_SET)
	must(t, err)
	var part []dirent
	buf := make([]byte, 128)
	for len(part) < 20 {
		n, err := unix.Getdents(fd, buf)
		if err != nil || n == 0 {
			t.Fatalf("getdents after %d entries: n=%d err=%v", len(part), n, err)
		}
		part = append(part, parseDirents(buf[:n])...)
	}
	pos, err := unix.Seek(fd, 0, unix.SEEK_CUR)
	must(t, err)
	if last := part[len(part)-1]; pos != last.Off {
		t.Errorf("telldir = %d, want the last entry's d_off %d", pos, last.Off)
	}
	for i := range part {
		if part[i].Name != full[i].Name {
			t.Fatalf("entry %d read in small steps is %q, in one go %q", i, part[i].Name, full[i].Name)
		}
	}
	rest := getdentsAll(t, fd, 128)
	wantNames(t, "reading on after telldir", rest, full[len(part):])
	for _, k := range []int{7, 2, 15} {
		_, err = unix.Seek(fd, part[k].Off, unix.SEEK_SET)
		must(t, err)
		wantNames(t, fmt.Sprintf("after seekdir to entry %d's d_off", k), getdentsAll(t, fd, 128), full[k+1:])
	}
	_, err = unix.Seek(fd, 0, unix.SEEK_SET)
	must(t, err)
	wantNames(t, "after rewinddir", getdentsAll(t, fd, 100), full)
}

func wantNames(t *testing.T, what string, got, want []dirent) {
	t.Helper()
	names := func(ds []dirent) string {
		var s []string
		for _, d := range ds {
			s = append(s, d.Name)
		}
		return strings.Join(s, " ")
	}
	if g, w := names(got), names(want); g != w {
		t.Errorf("%s: entries\n  %s\nwant\n  %s", what, g, w)
	}
}

func TestPosixReadOnlyMount(t *testing.T) {
	c := posixCase{readOnly: true, layers: []layerSpec{
		{"file": "base", "dir/": "", "full/x": "x", "link": "symlink:file"},
		{"file2": "top"},
	}}
	c.run(t, func(t *testing.T, fs posixFS) {
		wantFile(t, fs.p("file"), "base")
		wantFile(t, fs.p("file2"), "top")
		wantFile(t, fs.p("link"), "base")
		if entries, err := os.ReadDir(fs.Dir); err != nil || len(entries) != 5 {
			t.Errorf("readdir of read-only mount: %d entries (%v), want 5", len(entries), err)
		}
		var sfs unix.Statfs_t
		if err := unix.Statfs(fs.Dir, &sfs); err != nil {
			t.Errorf("statfs of read-only mount: %v", err)
		}
		for what, err := range readOnlyWrites(fs) {
			wantErrno(t, err, unix.EROFS, what)
		}
		wantFile(t, filepath.Join(fs.Layers[0], "file"), "base")
	})
}

// readOnlyWrites tries every kind of change on a read-only union.
func readOnlyWrites(fs posixFS) map[string]error {
	open := func(name string, flags int) error {
		fd, err := unix.Open(fs.p(name), flags, 0o644)
		if err == nil {
			unix.Close(fd)
		}
		return err
	}
	ts := []unix.Timespec{{Sec: 1}, {Sec: 1}}
	return map[string]error{
		"create":            open("new", unix.O_RDWR|unix.O_CREAT),
		"open for write":    open("file", unix.O_WRONLY),
		"open O_RDWR":       open("file2", unix.O_RDWR),
		"open O_TRUNC":      open("file", unix.O_WRONLY|unix.O_TRUNC),
		"mkdir":             unix.Mkdir(fs.p("newdir"), 0o755),
		"rmdir":             unix.Rmdir(fs.p("dir")),
		"unlink":            unix.Unlink(fs.p("file")),
		"rename":            unix.Rename(fs.p("file"), fs.p("moved")),
		"symlink":           unix.Symlink("file", fs.p("newlink")),
		"link":              unix.Link(fs.p("file"), fs.p("hard")),
		"mknod":             unix.Mkfifo(fs.p("fifo"), 0o644),
		"chmod":             unix.Chmod(fs.p("file"), 0o600),
		"chown":             unix.Lchown(fs.p("file"), 1000, 1000),
		"truncate":          unix.Truncate(fs.p("file"), 0),
		"utimensat":         unix.UtimesNanoAt(unix.AT_FDCWD, fs.p("file"), ts, 0),
		"setxattr":          unix.Setxattr(fs.p("file"), "user.test", []byte("v"), 0),
		"removexattr":       unix.Removexattr(fs.p("file"), "user.test"),
		"access W_OK":       unix.Access(fs.p("file"), unix.W_OK),
		"unlink in subdir":  unix.Unlink(fs.p("full", "x")),
		"create in subdir":  open("full/y", unix.O_WRONLY|unix.O_CREAT),
		"rename onto file2": unix.Rename(fs.p("file"), fs.p("file2")),
	}
}

func TestPosixStatfs(t *testing.T) {
	c := posixCase{layers: []layerSpec{{"f": "x"}}}
	c.run(t, func(t *testing.T, fs posixFS) {
		for _, p := range []string{fs.Dir, fs.p("f")} {
			var s unix.Statfs_t
			must(t, unix.Statfs(p, &s))
			if s.Bsize <= 0 || s.Blocks == 0 || s.Bfree > s.Blocks || s.Bavail > s.Blocks || s.Namelen != 255 {
				t.Errorf("statfs %s: bsize %d blocks %d bfree %d bavail %d namelen %d: want a sane fs with 255-byte names",
					p, s.Bsize, s.Blocks, s.Bfree, s.Bavail, s.Namelen)
			}
		}
	})
}

func TestPosixMmap(t *testing.T) {
	lower := strings.Repeat("lower bytes ", 1000)
	c := posixCase{layers: []layerSpec{{"low": lower, "low2": lower}}}
	c.run(t, func(t *testing.T, fs posixFS) {
		f, err := os.Open(fs.p("low"))
		must(t, err)
		m, err := unix.Mmap(int(f.Fd()), 0, len(lower), unix.PROT_READ, unix.MAP_SHARED)
		must(t, err)
		if string(m) != lower {
			t.Errorf("mmap of lower file: %q, want %q", clip(m), clip([]byte(lower)))
		}
		must(t, unix.Munmap(m))
		f.Close()

		must(t, os.WriteFile(fs.p("up"), make([]byte, 8192), 0o644))
		mmapWrite(t, fs, "up", make([]byte, 8192))
		mmapWrite(t, fs, "low2", []byte(lower))
	})
}

// mmapWrite maps name shared and writable, changes it through the mapping
// and checks the change is in the upper dir after msync, before munmap.
func mmapWrite(t *testing.T, fs posixFS, name string, before []byte) {
	t.Helper()
	f, err := os.OpenFile(fs.p(name), os.O_RDWR, 0)
	must(t, err)
	defer f.Close()
	m, err := unix.Mmap(int(f.Fd()), 0, len(before), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	must(t, err)
	defer unix.Munmap(m)
	want := append([]byte{}, before...)
	copy(want[100:], "written through mmap")
	copy(m[100:], "written through mmap")
	must(t, unix.Msync(m, unix.MS_SYNC))
	wantFile(t, filepath.Join(fs.Upper, name), string(want))
	wantFile(t, fs.p(name), string(want))
}

func TestPosixTruncate(t *testing.T) {
	c := posixCase{layers: []layerSpec{{"low": "0123456789", "low2": "0123456789"}}}
	c.run(t, func(t *testing.T, fs posixFS) {
		must(t, os.WriteFile(fs.p("up"), []byte("0123456789"), 0o644))
		for _, name := range []string{"up", "low"} {
			must(t, os.Truncate(fs.p(name), 4))
			wantFile(t, fs.p(name), "0123")
			must(t, os.Truncate(fs.p(name), 8))
			wantFile(t, fs.p(name), "0123\x00\x00\x00\x00")
			wantFile(t, filepath.Join(fs.Upper, name), "0123\x00\x00\x00\x00")
		}
		f, err := os.OpenFile(fs.p("low2"), os.O_RDWR, 0)
		must(t, err)
		defer f.Close()
		must(t, f.Truncate(3<<20))
		if st := lstat(t, fs.p("low2")); st.Size != 3<<20 {
			t.Errorf("ftruncate grow: size %d, want %d", st.Size, 3<<20)
		}
		must(t, f.Truncate(2))
		buf := make([]byte, 16)
		n, _ := f.ReadAt(buf, 0)
		if string(buf[:n]) != "01" {
			t.Errorf("after ftruncate shrink: %q, want %q", buf[:n], "01")
		}
		wantFile(t, fs.p("low2"), "01")
		for _, name := range []string{"low", "low2"} {
			wantFile(t, filepath.Join(fs.Layers[0], name), "0123456789")
		}
	})
}

func TestPosixFallocate(t *testing.T) {
	c := posixCase{layers: []layerSpec{{"low": strings.Repeat("a", 8192)}}}
	c.run(t, func(t *testing.T, fs posixFS) {
		f, err := os.OpenFile(fs.p("low"), os.O_RDWR, 0)
		must(t, err)
		defer f.Close()
		fd := int(f.Fd())
		if err := unix.Fallocate(fd, 0, 0, 1<<20); err != nil {
			t.Fatalf("fallocate: %v", err)
		}
		if st := lstat(t, fs.p("low")); st.Size != 1<<20 || st.Blocks*512 < 1<<20 {
			t.Errorf("after fallocate 1 MiB: size %d, %d bytes allocated", st.Size, st.Blocks*512)
		}
		if err := unix.Fallocate(fd, unix.FALLOC_FL_KEEP_SIZE, 0, 4<<20); err != nil {
			t.Fatalf("fallocate KEEP_SIZE: %v", err)
		}
		if st := lstat(t, fs.p("low")); st.Size != 1<<20 || st.Blocks*512 < 4<<20 {
			t.Errorf("after fallocate KEEP_SIZE 4 MiB: size %d, %d bytes allocated", st.Size, st.Blocks*512)
		}
		if err := unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 0, 4096); err != nil {
			t.Fatalf("fallocate PUNCH_HOLE: %v", err)
		}
		want := make([]byte, 1<<20)
		copy(want[4096:], strings.Repeat("a", 4096))
		wantFile(t, fs.p("low"), string(want))
		wantFile(t, filepath.Join(fs.Upper, "low"), string(want))
		wantFile(t, filepath.Join(fs.Layers[0], "low"), strings.Repeat("a", 8192))
	})
}

func TestPosixUtimensat(t *testing.T) {
	old := unix.Timespec{Sec: 1000000000, Nsec: 111111111}
	c := posixCase{layers: []layerSpec{{"low": "l", "lowdir/": "", "keep": "k", "lnk": "symlink:low"}},
		prepare: func(t *testing.T, layers []string, _ string) {
			for _, n := range []string{"low", "keep", "lnk"} {
				must(t, unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(layers[0], n), []unix.Timespec{old, old}, unix.AT_SYMLINK_NOFOLLOW))
			}
		}}
	c.run(t, func(t *testing.T, fs posixFS) {
		must(t, os.WriteFile(fs.p("up"), nil, 0o644))
		atime := unix.Timespec{Sec: 1234567890, Nsec: 123456789}
		mtime := unix.Timespec{Sec: 1500000000, Nsec: 987654321}
		for _, name := range []string{"up", "low", "lowdir", "lnk"} {
			err := unix.UtimesNanoAt(unix.AT_FDCWD, fs.p(name), []unix.Timespec{atime, mtime}, unix.AT_SYMLINK_NOFOLLOW)
			if err != nil {
				t.Errorf("utimensat %s: %v", name, err)
				continue
			}
			for _, p := range []string{fs.p(name), filepath.Join(fs.Upper, name)} {
				st := lstat(t, p)
				if st.Atim != atime || st.Mtim != mtime {
					t.Errorf("%s: atime %v mtime %v, want %v %v", p, st.Atim, st.Mtim, atime, mtime)
				}
			}
		}
		omit := unix.Timespec{Nsec: unix.UTIME_OMIT}
		newM := unix.Timespec{Sec: 1600000000, Nsec: 5}
		must(t, unix.UtimesNanoAt(unix.AT_FDCWD, fs.p("up"), []unix.Timespec{omit, newM}, 0))
		if st := lstat(t, fs.p("up")); st.Atim != atime || st.Mtim != newM {
			t.Errorf("UTIME_OMIT atime: atime %v mtime %v, want %v %v", st.Atim, st.Mtim, atime, newM)
		}
		// chmod copies "keep" up; that must not touch its mtime.
		must(t, os.Chmod(fs.p("keep"), 0o600))
		if st := lstat(t, fs.p("keep")); st.Mtim != old {
			t.Errorf("chmod of a lower file changed its mtime to %v, want %v", st.Mtim, old)
		}
		if st := lstat(t, filepath.Join(fs.Layers[0], "low")); st.Mtim != old {
			t.Errorf("utimensat through the mount changed the lower layer's mtime to %v", st.Mtim)
		}
	})
}

func TestPosixPermissions(t *testing.T) {
	c := posixCase{layers: []layerSpec{{"secret": "s", "public": "p", "mine": "m", "shared/": "", "private/f": "f"}},
		prepare: func(t *testing.T, layers []string, _ string) {
			l := layers[0]
			must(t, os.Chmod(filepath.Join(l, "secret"), 0o600))
			must(t, os.Chown(filepath.Join(l, "mine"), 1000, 1000))
			must(t, os.Chmod(filepath.Join(l, "shared"), 0o777))
			must(t, os.Chmod(filepath.Join(l, "private"), 0o700))
		}}
	c.run(t, func(t *testing.T, fs posixFS) {
		openMountPath(t, fs)
		must(t, os.WriteFile(fs.p("usecret"), []byte("us"), 0o600))
		must(t, os.Chmod(fs.p("usecret"), 0o600))
		if out, err := runAsUser(t, "cat", fs.p("public")); err != nil || out != "p" {
			t.Fatalf("uid 1000 reading a 0644 file: %q, %v (the mount is not reachable, so the other checks mean nothing)", out, err)
		}
		for _, name := range []string{"secret", "usecret", "private/f"} {
			wantDenied(t, "Permission denied", "cat", fs.p(name))
		}
		wantDenied(t, "Permission denied", "sh", "-c", "echo x >> "+fs.p("public"))
		wantDenied(t, "Operation not permitted", "chmod", "0777", fs.p("public"))
		wantDenied(t, "Operation not permitted", "chmod", "0777", fs.p("usecret"))
		if out, err := runAsUser(t, "chmod", "0600", fs.p("mine")); err != nil {
			t.Errorf("uid 1000 chmod of its own lower file: %v: %s", err, out)
		}
		if st := lstat(t, fs.p("mine")); st.Mode&0o7777 != 0o600 || st.Uid != 1000 {
			t.Errorf("own file after chmod: mode %o uid %d, want 600 and 1000", st.Mode&0o7777, st.Uid)
		}
		if out, err := runAsUser(t, "sh", "-c", "echo hi > "+fs.p("shared", "new")); err != nil {
			t.Fatalf("uid 1000 creating in a 0777 dir: %v: %s", err, out)
		}
		for _, p := range []string{fs.p("shared", "new"), filepath.Join(fs.Upper, "shared", "new")} {
			if st := lstat(t, p); st.Uid != 1000 || st.Gid != 1000 {
				t.Errorf("%s created by uid 1000 is owned by %d:%d", p, st.Uid, st.Gid)
			}
		}
	})
}

// wantDenied runs argv as uid 1000 and wants it to fail with msg (strerror
// of the errno the tool got).
func wantDenied(t *testing.T, msg string, argv ...string) {
	t.Helper()
	out, err := runAsUser(t, argv...)
	if err == nil || !strings.Contains(out, msg) {
		t.Errorf("uid 1000 %q: err %v, output %q; want failure with %q", argv, err, out, msg)
	}
}

func TestPosixHardLinks(t *testing.T) {
	c := posixCase{layers: []layerSpec{{"h1": "shared", "low": "l"}},
		prepare: func(t *testing.T, layers []string, _ string) {
			must(t, os.Link(filepath.Join(layers[0], "h1"), filepath.Join(layers[0], "h2")))
		}}
	c.run(t, func(t *testing.T, fs posixFS) {
		must(t, os.WriteFile(fs.p("a"), []byte("a"), 0o644))
		must(t, os.Link(fs.p("a"), fs.p("b")))
		must(t, os.Link(fs.p("low"), fs.p("low-link")))
		for _, pair := range [][2]string{{"a", "b"}, {"low", "low-link"}, {"h1", "h2"}} {
			s1, s2 := lstat(t, fs.p(pair[0])), lstat(t, fs.p(pair[1]))
			if s1.Nlink != 2 || s2.Nlink != 2 || s1.Ino != s2.Ino {
				t.Errorf("hard links %s/%s: nlink %d/%d ino %d/%d; want nlink 2 and one inode",
					pair[0], pair[1], s1.Nlink, s2.Nlink, s1.Ino, s2.Ino)
			}
		}
		u1, u2 := lstat(t, filepath.Join(fs.Upper, "a")), lstat(t, filepath.Join(fs.Upper, "b"))
		if u1.Nlink != 2 || u1.Ino != u2.Ino {
			t.Errorf("upper dir: a/b nlink %d, ino %d/%d; want one inode with 2 links", u1.Nlink, u1.Ino, u2.Ino)
		}
		must(t, os.Remove(fs.p("b")))
		if st := lstat(t, fs.p("a")); st.Nlink != 1 {
			t.Errorf("after unlinking one of two links: nlink %d, want 1", st.Nlink)
		}
	})
}

func TestPosixInodeStability(t *testing.T) {
	c := posixCase{layers: []layerSpec{{"low": "l", "dir/f": "f"}, {"top": "t"}}}
	c.run(t, func(t *testing.T, fs posixFS) {
		names := []string{"low", "dir", "dir/f", "top", "."}
		before := map[string]uint64{}
		for _, n := range names {
			before[n] = lstat(t, fs.p(n)).Ino
			for i := 0; i < 3; i++ {
				if ino := lstat(t, fs.p(n)).Ino; ino != before[n] {
					t.Errorf("%s: st_ino changed between two stats: %d then %d", n, before[n], ino)
				}
			}
		}
		f, err := os.OpenFile(fs.p("low"), os.O_WRONLY|os.O_APPEND, 0)
		must(t, err)
		var st unix.Stat_t
		must(t, unix.Fstat(int(f.Fd()), &st))
		_, err = f.Write([]byte("more"))
		must(t, err)
		f.Close()
		if st.Ino != before["low"] {
			t.Errorf("fstat of the copied-up fd: st_ino %d, want %d", st.Ino, before["low"])
		}
		must(t, os.WriteFile(fs.p("dir", "new"), nil, 0o644))
		must(t, os.Chmod(fs.p("top"), 0o600))
		for _, n := range names {
			if ino := lstat(t, fs.p(n)).Ino; ino != before[n] {
				t.Errorf("%s: st_ino %d after copy-up, %d before", n, ino, before[n])
			}
		}
	})
}

func TestPosixInodesDistinctAcrossLayers(t *testing.T) {
	c := posixCase{layers: []layerSpec{{}, {}}, prepare: func(t *testing.T, layers []string, _ string) {
		// Fresh tmpfs instances number their inodes alike, so a union that
		// passes lower st_ino through shows the same number twice.
		for i, l := range layers {
			mountTmpfs(t, l)
			for j := 0; j < 20; j++ {
				must(t, os.WriteFile(filepath.Join(l, fmt.Sprintf("l%d-%02d", i, j)), nil, 0o644))
			}
			must(t, os.Mkdir(filepath.Join(l, fmt.Sprintf("dir%d", i)), 0o755))
		}
		if !sharesIno(t, layers[0], layers[1]) {
			t.Fatal("the two tmpfs layers share no inode number: the test would prove nothing")
		}
	}}
	c.run(t, func(t *testing.T, fs posixFS) {
		for j := 0; j < 20; j++ {
			must(t, os.WriteFile(fs.p(fmt.Sprintf("u-%02d", j)), nil, 0o644))
		}
		entries, err := os.ReadDir(fs.Dir)
		must(t, err)
		type id struct{ dev, ino uint64 }
		owner := map[id]string{}
		for _, e := range append(entries, nil) {
			name := "."
			if e != nil {
				name = e.Name()
			}
			st := lstat(t, fs.p(name))
			k := id{st.Dev, st.Ino}
			if prev, dup := owner[k]; dup {
				t.Errorf("%s and %s share st_dev/st_ino %d/%d", prev, name, k.dev, k.ino)
			}
			owner[k] = name
		}
		if len(owner) != 20*3+2+1 {
			t.Errorf("stat'ed %d distinct entries, want %d", len(owner), 63)
		}
	})
}

func mountTmpfs(t *testing.T, dir string) {
	t.Helper()
	must(t, unix.Mount("tmpfs", dir, "tmpfs", 0, "mode=0755,size=16m"))
	// Registered after the mounts that use it, so it runs after they are gone.
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmount tmpfs %s: %v", dir, err)
			unix.Unmount(dir, unix.MNT_DETACH)
		}
	})
}

func sharesIno(t *testing.T, a, b string) bool {
	inos := map[uint64]bool{}
	for _, dir := range []string{a, b} {
		entries, err := os.ReadDir(dir)
		must(t, err)
		for _, e := range entries {
			ino := lstat(t, filepath.Join(dir, e.Name())).Ino
			if dir == b && inos[ino] {
				return true
			}
			inos[ino] = true
		}
	}
	return false
}

// TestPosixACL: POSIX ACLs of lower files are enforced, and ACLs set
// through the mount are kept (in the upper), enforced and removable, as on
// overlayfs (strata lets the kernel handle them: it caches and checks them).
func TestPosixACL(t *testing.T) {
	setfacl := func(t *testing.T, args ...string) {
		t.Helper()
		if out, err := exec.Command("setfacl", args...).CombinedOutput(); err != nil {
			t.Fatalf("setfacl %q: %v: %s", args, err, out)
		}
	}
	c := posixCase{layers: []layerSpec{{"granted": "g", "plain": "p"}},
		prepare: func(t *testing.T, layers []string, _ string) {
			for _, name := range []string{"granted", "plain"} {
				must(t, os.Chmod(filepath.Join(layers[0], name), 0o600))
			}
			setfacl(t, "-m", "u:1000:r", filepath.Join(layers[0], "granted"))
		}}
	c.run(t, func(t *testing.T, fs posixFS) {
		openMountPath(t, fs)
		if out, err := runAsUser(t, "cat", fs.p("granted")); err != nil || out != "g" {
			t.Errorf("uid 1000 reading a lower file its ACL grants: %q, %v", out, err)
		}
		wantDenied(t, "Permission denied", "cat", fs.p("plain"))
		setfacl(t, "-m", "u:1000:rw", fs.p("plain"))
		if out, err := runAsUser(t, "sh", "-c", "echo w >> "+fs.p("plain")+" && cat "+fs.p("plain")); err != nil || out != "pw\n" {
			t.Errorf("uid 1000 appending under an ACL set through the mount: %q, %v", out, err)
		}
		setfacl(t, "-b", fs.p("plain"))
		wantDenied(t, "Permission denied", "cat", fs.p("plain"))
	})
}
