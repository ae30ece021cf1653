package remote

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// fault answers a blob request badly; next is the real registry.
type fault func(w http.ResponseWriter, r *http.Request, next http.Handler)

// faulty sits in front of a registry and spoils a share of blob GETs once
// enabled (Resolve reads the config before a test enables it).
type faulty struct {
	next    http.Handler
	faults  []fault
	rate    float64 // share of blob GETs spoiled, 1 for all
	enabled atomic.Bool
	gets    atomic.Int64 // blob GETs seen while enabled
	spoiled atomic.Int64

	mu  sync.Mutex // guards rng
	rng *rand.Rand
}

func newFaulty(rate float64, faults ...fault) *faulty {
	return &faulty{faults: faults, rate: rate, rng: rand.New(rand.NewPCG(1, 2))}
}

func (f *faulty) wrap(next http.Handler) http.Handler {
	f.next = next
	return f
}

func (f *faulty) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !isBlobGet(r) || !f.enabled.Load() {
		f.next.ServeHTTP(w, r)
		return
	}
	f.gets.Add(1)
	if flt := f.pick(); flt != nil {
		f.spoiled.Add(1)
		flt(w, r, f.next)
		return
	}
	f.next.ServeHTTP(w, r)
}

func (f *faulty) pick() fault {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.rng.Float64() >= f.rate {
		return nil
	}
	return f.faults[f.rng.IntN(len(f.faults))]
}

func status(code int) fault {
	return func(w http.ResponseWriter, r *http.Request, _ http.Handler) {
		if code == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "0")
		}
		http.Error(w, http.StatusText(code), code)
	}
}

// reset closes the connection with a TCP RST before any answer.
func reset(w http.ResponseWriter, r *http.Request, _ http.Handler) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(err)
	}
	if tcp, ok := conn.(*net.TCPConn); ok {
		tcp.SetLinger(0)
	}
	conn.Close()
}

// record runs the registry and returns its answer for the test to spoil.
func record(r *http.Request, next http.Handler) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	next.ServeHTTP(rec, r)
	return rec
}

// lieLength declares the full Content-Length and sends half the body; the
// server then cuts the connection.
func lieLength(w http.ResponseWriter, r *http.Request, next http.Handler) {
	rec := record(r, next)
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	body := rec.Body.Bytes()
	w.Write(body[:len(body)/2])
}

// cutBody writes a whole, correct header by hand, then part of the body,
// then closes the connection.
func cutBody(w http.ResponseWriter, r *http.Request, next http.Handler) {
	rec := record(r, next)
	conn, buf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	fmt.Fprintf(buf, "HTTP/1.1 %d %s\r\n", rec.Code, http.StatusText(rec.Code))
	rec.Header().Write(buf)
	fmt.Fprintf(buf, "\r\n")
	body := rec.Body.Bytes()
	buf.Write(body[:len(body)*2/3])
	buf.Flush()
}

// shiftRange serves the bytes one further than asked, and says so.
func shiftRange(w http.ResponseWriter, r *http.Request, next http.Handler) {
	var first, last int64
	if _, err := fmt.Sscanf(r.Header.Get("Range"), "bytes=%d-%d", &first, &last); err != nil || first == 0 {
		status(http.StatusBadGateway)(w, r, next)
		return
	}
	r.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", first-1, last-1))
	next.ServeHTTP(w, r)
}

// dropRange makes the registry answer 200 with the whole blob.
func dropRange(w http.ResponseWriter, r *http.Request, next http.Handler) {
	r.Header.Del("Range")
	next.ServeHTTP(w, r)
}

// hang answers nothing until the client gives up.
func hang(w http.ResponseWriter, r *http.Request, _ http.Handler) {
	<-r.Context().Done()
}

// contentRange is the header a correct 206 carries.
func contentRange(off, n, size int64) string {
	return "bytes " + strconv.FormatInt(off, 10) + "-" + strconv.FormatInt(off+n-1, 10) + "/" + strconv.FormatInt(size, 10)
}

func TestCheckContentRange(t *testing.T) {
	ok := []string{contentRange(10, 5, 100), "bytes 10-14/*"}
	for _, h := range ok {
		if err := checkContentRange(h, 10, 5, 100); err != nil {
			t.Errorf("%q: %v", h, err)
		}
	}
	bad := []string{"", "bytes 10-14", "bytes 11-15/100", "bytes 10-15/100", "bytes 10-14/99", "items 10-14/100", "bytes=10-14/100"}
	for _, h := range bad {
		if err := checkContentRange(h, 10, 5, 100); err == nil {
			t.Errorf("%q accepted", h)
		}
	}
	if !strings.Contains(contentRange(0, 1, 1), "0-0/1") {
		t.Error("contentRange helper")
	}
}
