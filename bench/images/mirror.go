package images

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// ErrNoMirror: apt's sources name no Debian mirror for the suite, so
// debootstrap has nowhere to download from.
var ErrNoMirror = errors.New("no Debian mirror in apt's sources")

// aptSource is one "deb" source of apt: where packages of which suites
// come from.
type aptSource struct {
	uri    string
	suites []string
}

// findMirror returns the URI apt already uses for suite's main archive
// (not the security archive, whose layout debootstrap cannot use), read
// from /etc/apt/sources.list and sources.list.d/*.list (one-line form) and
// *.sources (deb822 form).
func findMirror(etcApt, suite string) (string, error) {
	var srcs []aptSource
	files := []string{filepath.Join(etcApt, "sources.list")}
	for _, pat := range []string{"*.list", "*.sources"} {
		m, _ := filepath.Glob(filepath.Join(etcApt, "sources.list.d", pat))
		files = append(files, m...)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", err
		}
		if strings.HasSuffix(f, ".sources") {
			srcs = append(srcs, parseDeb822(string(b))...)
		} else {
			srcs = append(srcs, parseOneLine(string(b))...)
		}
	}
	for _, s := range srcs {
		if slices.Contains(s.suites, suite) && !strings.Contains(s.uri, "security") {
			return strings.TrimSuffix(s.uri, "/"), nil
		}
	}
	return "", fmt.Errorf("%w: none for %s in %s", ErrNoMirror, suite, strings.Join(files, ", "))
}

// parseOneLine reads "deb [options] URI SUITE COMPONENT..." lines.
func parseOneLine(text string) []aptSource {
	var out []aptSource
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "deb" {
			continue
		}
		f = f[1:]
		if strings.HasPrefix(f[0], "[") {
			for len(f) > 0 && !strings.HasSuffix(f[0], "]") {
				f = f[1:]
			}
			if len(f) > 0 {
				f = f[1:]
			}
		}
		if len(f) >= 2 {
			out = append(out, aptSource{uri: f[0], suites: []string{f[1]}})
		}
	}
	return out
}

// parseDeb822 reads stanzas of "Types:", "URIs:", "Suites:" (and
// "Enabled: no" to skip one), separated by blank lines.
func parseDeb822(text string) []aptSource {
	var out []aptSource
	for _, stanza := range strings.Split(strings.ReplaceAll(text, "\r", ""), "\n\n") {
		fields := map[string]string{}
		for _, line := range strings.Split(stanza, "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "#") {
				continue
			}
			if k, v, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(line, " ") {
				fields[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
			}
		}
		if !slices.Contains(strings.Fields(fields["types"]), "deb") || strings.EqualFold(fields["enabled"], "no") {
			continue
		}
		for _, uri := range strings.Fields(fields["uris"]) {
			out = append(out, aptSource{uri: uri, suites: strings.Fields(fields["suites"])})
		}
	}
	return out
}
