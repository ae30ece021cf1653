package images

import (
	"bufio"
	"context"
	"math/rand/v2"
	"os"
)

// dataBlock is the unit of writeDataFile's pattern.
const dataBlock = 4096

// writeDataFile writes size bytes that depend only on seed and compress
// to a bit over half: each 4 KiB block is either fresh pseudo-random bytes
// (incompressible) or, with probability one half, a copy of one of the six
// blocks before it (which any LZ compressor finds within its window). So
// the file behaves like the large assets of real images (partly
// compressed media, partly repeated records) and costs a compressor about
// what real data does, which neither zeros nor pure noise would.
func writeDataFile(ctx context.Context, p string, size int64, seed uint64) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	const history = 6
	ring := make([][]byte, history+1)
	for i := range ring {
		ring[i] = make([]byte, dataBlock)
	}
	for n := int64(0); n < size; n += dataBlock {
		if n%(64<<20) == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		i := int(n/dataBlock) % len(ring)
		blk := ring[i]
		if n >= history*dataBlock && r.IntN(2) == 0 {
			copy(blk, ring[(i+len(ring)-1-r.IntN(history))%len(ring)])
		} else {
			fillRandom(r, blk)
		}
		if _, err := w.Write(blk[:min(dataBlock, size-n)]); err != nil {
			return err
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return f.Close()
}

func fillRandom(r *rand.Rand, b []byte) {
	for j := 0; j+8 <= len(b); j += 8 {
		v := r.Uint64()
		for k := range 8 {
			b[j+k] = byte(v >> (8 * k))
		}
	}
}
