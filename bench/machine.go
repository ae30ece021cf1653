package bench

import (
	"bufio"
	"fmt"
	"maps"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Machine records where a report was measured; figures from different
// machines are not comparable, ratios from one report are.
type Machine struct {
	Date      string `json:"date"`
	Kernel    string `json:"kernel"`
	CPUs      int    `json:"cpus"`
	CPUModel  string `json:"cpu_model"`
	MemTotal  string `json:"mem_total"`
	GoVersion string `json:"go_version"`
	// Load is /proc/loadavg at the start and the end: other work on the
	// machine during the run shows here, and in the min–max spread.
	LoadStart string `json:"load_start"`
	LoadEnd   string `json:"load_end,omitempty"`
	// Tools maps a peer or helper tool to the version it reported.
	Tools map[string]string `json:"tools,omitempty"`
}

// ThisMachine fills Machine from /proc and the Go runtime.
func ThisMachine() Machine {
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return Machine{
		Date:      time.Now().UTC().Format(time.RFC3339),
		Kernel:    strings.TrimSpace(string(kernel)),
		CPUs:      runtime.NumCPU(),
		CPUModel:  procField("/proc/cpuinfo", "model name"),
		MemTotal:  procField("/proc/meminfo", "MemTotal"),
		GoVersion: runtime.Version(),
		LoadStart: LoadAvg(),
		Tools:     map[string]string{},
	}
}

// LoadAvg returns the 1, 5 and 15 minute load averages.
func LoadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// procField returns the value of the first "key: value" line named key.
func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func (m Machine) markdown(b *strings.Builder) {
	fmt.Fprintf(b, "- date: %s\n- kernel: %s\n- CPUs: %d × %s\n- memory: %s\n- Go: %s\n- load average at start / end: %s / %s\n",
		m.Date, m.Kernel, m.CPUs, m.CPUModel, m.MemTotal, m.GoVersion, m.LoadStart, m.LoadEnd)
	for _, k := range sortedKeys(m.Tools) {
		fmt.Fprintf(b, "- %s: %s\n", k, m.Tools[k])
	}
}

func sortedKeys(m map[string]string) []string {
	return slices.Sorted(maps.Keys(m))
}
