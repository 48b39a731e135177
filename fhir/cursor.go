package fhir

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"hash/fnv"
	"math"
)

// cursor is where the next page of a search starts: the snapshot the first
// page saw, the change sequence number of the last match returned, the
// total counted on the first page, and a hash of the search it belongs to.
// It is opaque to clients (base64url of varints), and a cursor used with
// another search is refused.
type cursor struct {
	snapshot int64
	after    int64
	total    int64 // -1: not counted
	desc     bool
	query    uint32
}

const cursorVersion = 1

var errCursor = errors.New("the _cursor is not valid for this search")

func (c cursor) encode() string {
	b := make([]byte, 0, 40)
	b = binary.AppendUvarint(b, cursorVersion)
	b = binary.AppendVarint(b, c.snapshot)
	b = binary.AppendVarint(b, c.after)
	b = binary.AppendVarint(b, c.total)
	flags := uint64(0)
	if c.desc {
		flags = 1
	}
	b = binary.AppendUvarint(b, flags)
	b = binary.AppendUvarint(b, uint64(c.query))
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s string) (cursor, error) {
	if len(s) > 100 {
		return cursor{}, errCursor
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return cursor{}, errCursor
	}
	var c cursor
	var fields [6]int64
	for i := range fields {
		var v int64
		var n int
		if i == 0 || i >= 4 {
			var u uint64
			u, n = binary.Uvarint(b)
			v = int64(u)
			if u > math.MaxUint32 {
				return cursor{}, errCursor
			}
		} else {
			v, n = binary.Varint(b)
		}
		if n <= 0 {
			return cursor{}, errCursor
		}
		b = b[n:]
		fields[i] = v
	}
	if len(b) != 0 || fields[0] != cursorVersion || fields[4] > 1 {
		return cursor{}, errCursor
	}
	c.snapshot, c.after, c.total = fields[1], fields[2], fields[3]
	c.desc = fields[4] == 1
	c.query = uint32(fields[5])
	if c.snapshot <= 0 || c.after < 0 || c.total < -1 {
		return cursor{}, errCursor
	}
	return c, nil
}

// queryHash identifies a search by its type and canonical filter
// parameters.
func queryHash(typ, canonical string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(typ))
	h.Write([]byte{0})
	h.Write([]byte(canonical))
	return h.Sum32()
}
