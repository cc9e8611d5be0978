package aggregate

import (
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/parquet-go/parquet-go"

	"github.com/sluicehq/sluice/schema"
)

func float64frombits(b uint64) float64 { return math.Float64frombits(b) }

// intern maps a dimension's values to small ids, 0 being NULL, so group
// keys are fixed-size integers and no string is allocated per row.
type intern struct {
	typ  schema.Type
	strs map[string]int32
	ints map[int64]int32
	vals []any
}

func newIntern(typ schema.Type) *intern {
	return &intern{typ: typ, strs: map[string]int32{}, ints: map[int64]int32{}, vals: []any{nil}}
}

func (in *intern) str(b []byte) int32 {
	if id, ok := in.strs[string(b)]; ok { // no allocation: the compiler special-cases this lookup
		return id
	}
	s := string(b)
	id := int32(len(in.vals))
	in.strs[s] = id
	in.vals = append(in.vals, s)
	return id
}

func (in *intern) int(v int64) int32 {
	if id, ok := in.ints[v]; ok {
		return id
	}
	id := int32(len(in.vals))
	in.ints[v] = id
	in.vals = append(in.vals, v)
	return id
}

// id interns any dimension value (nil, string, int64 or bool).
func (in *intern) id(v any) int32 {
	switch x := v.(type) {
	case string:
		return in.str([]byte(x))
	case int64:
		return in.int(x)
	case bool:
		if x {
			return in.int(1)
		}
		return in.int(0)
	}
	return 0
}

func (in *intern) value(id int32) any {
	v := in.vals[id]
	if in.typ == schema.TypeBool && v != nil {
		return v.(int64) != 0
	}
	return v
}

// colReader streams one column chunk, page by page, into per-batch arrays:
// validity, and as the aggregator needs them the value (int64 or float64
// bits), the dimension id and the distinct-count hash. Dictionary pages
// translate each dictionary entry once (to an id or a hash), so the rows of
// a dictionary-encoded string column cost an array lookup each.
type colReader struct {
	spec   *colSpec
	intern *intern
	maxDef byte
	absent bool // the object predates the (nullable) field: every row is NULL

	pages parquet.Pages
	page  parquet.Page
	def   []byte
	n     int // rows in page
	pos   int // next row in page
	vpos  int // next value in page data

	// current page's values: indices into the dictionary, or plain values
	idx   []int32
	i64   []int64
	f64   []float64
	bdata []byte
	boffs []uint32
	bits  []byte
	nval  int

	// dictionary translations, rebuilt when the dictionary changes
	dict     parquet.Dictionary
	dictVal  []uint64
	dictID   []int32
	dictHash []uint64

	// outputs for the current batch
	valid []bool
	val   []uint64
	id    []int32
	hash  []uint64
}

func (c *colReader) start(p parquet.Pages) {
	c.pages, c.page, c.n, c.pos, c.vpos = p, nil, 0, 0, 0
}

func (c *colReader) close() {
	if c.page != nil {
		parquet.Release(c.page)
		c.page = nil
	}
	if c.pages != nil {
		c.pages.Close()
		c.pages = nil
	}
}

var errShort = errors.New("column has fewer values than the row group has rows")

func (c *colReader) nextPage() error {
	if c.page != nil {
		parquet.Release(c.page)
		c.page = nil
	}
	p, err := c.pages.ReadPage()
	if err == io.EOF {
		return errShort
	}
	if err != nil {
		return err
	}
	c.page = p
	c.n, c.pos, c.vpos = int(p.NumRows()), 0, 0
	c.def = nil
	if c.maxDef > 0 {
		c.def = p.DefinitionLevels()
		if len(c.def) != c.n {
			return fmt.Errorf("page has %d definition levels for %d rows", len(c.def), c.n)
		}
	}
	nvals := c.n
	if c.def != nil {
		nvals = 0
		for _, d := range c.def {
			if d == c.maxDef {
				nvals++
			}
		}
	}
	c.nval = nvals
	c.idx, c.i64, c.f64, c.bdata, c.boffs, c.bits = nil, nil, nil, nil, nil, nil
	data := p.Data()
	if d := p.Dictionary(); d != nil {
		c.idx = data.Int32()
		if len(c.idx) < nvals {
			return fmt.Errorf("page has %d dictionary indexes for %d values", len(c.idx), nvals)
		}
		if d != c.dict {
			if err := c.loadDict(d); err != nil {
				return err
			}
		}
		for _, i := range c.idx[:nvals] {
			if i < 0 || int(i) >= d.Len() {
				return fmt.Errorf("dictionary index %d out of range [0, %d)", i, d.Len())
			}
		}
		return nil
	}
	var have int
	switch c.spec.typ {
	case schema.TypeString:
		c.bdata, c.boffs = data.ByteArray()
		have = len(c.boffs) - 1
	case schema.TypeInt64, schema.TypeTimestamp:
		c.i64 = data.Int64()
		have = len(c.i64)
	case schema.TypeFloat64:
		c.f64 = data.Double()
		have = len(c.f64)
	case schema.TypeBool:
		c.bits = data.Boolean()
		have = len(c.bits) * 8
	}
	if have < nvals {
		return fmt.Errorf("page has %d values, its levels say %d", have, nvals)
	}
	return nil
}

// loadDict translates every dictionary entry once.
func (c *colReader) loadDict(d parquet.Dictionary) error {
	c.dict = d
	n := d.Len()
	data := d.Page().Data()
	c.dictVal, c.dictID, c.dictHash = c.dictVal[:0], c.dictID[:0], c.dictHash[:0]
	for i := 0; i < n; i++ {
		var (
			v uint64
			b []byte
		)
		switch c.spec.typ {
		case schema.TypeString:
			vals, offs := data.ByteArray()
			if len(offs) <= n {
				return fmt.Errorf("dictionary has %d offsets for %d entries", len(offs), n)
			}
			b = vals[offs[i]:offs[i+1]]
		case schema.TypeInt64, schema.TypeTimestamp:
			v = uint64(data.Int64()[i])
		case schema.TypeFloat64:
			v = math.Float64bits(data.Double()[i])
		case schema.TypeBool:
			v = uint64(data.Boolean()[i/8]>>(i%8)) & 1
		}
		c.dictVal = append(c.dictVal, v)
		if c.spec.dim >= 0 {
			if b != nil || c.spec.typ == schema.TypeString {
				c.dictID = append(c.dictID, c.intern.str(b))
			} else {
				c.dictID = append(c.dictID, c.intern.int(int64(v)))
			}
		}
		if c.spec.wantHash {
			if c.spec.typ == schema.TypeString {
				c.dictHash = append(c.dictHash, hashBytes(b))
			} else {
				c.dictHash = append(c.dictHash, hashUint64(v))
			}
		}
	}
	return nil
}

// fill decodes the next k rows into the batch arrays.
func (c *colReader) fill(k int) error {
	if c.absent {
		for j := range k {
			c.valid[j] = false
			if c.spec.dim >= 0 {
				c.id[j] = 0
			}
		}
		return nil
	}
	for o := 0; o < k; {
		if c.pos == c.n {
			if err := c.nextPage(); err != nil {
				return err
			}
			continue
		}
		m := min(k-o, c.n-c.pos)
		c.fillRun(o, m)
		c.pos += m
		o += m
	}
	return nil
}

// fillRun fills batch positions [o, o+m) from the current page. One loop
// per encoding and type keeps the branches out of the per-row path.
func (c *colReader) fillRun(o, m int) {
	valid := c.valid[o : o+m]
	if c.def == nil {
		for j := range valid {
			valid[j] = true
		}
	} else {
		for j := range valid {
			valid[j] = c.def[c.pos+j] == c.maxDef
		}
	}
	dim := c.spec.dim >= 0
	if c.idx != nil {
		for j := range valid {
			if !valid[j] {
				if dim {
					c.id[o+j] = 0
				}
				continue
			}
			di := c.idx[c.vpos]
			c.vpos++
			if c.val != nil {
				c.val[o+j] = c.dictVal[di]
			}
			if dim {
				c.id[o+j] = c.dictID[di]
			}
			if c.hash != nil {
				c.hash[o+j] = c.dictHash[di]
			}
		}
		return
	}
	switch c.spec.typ {
	case schema.TypeString:
		for j := range valid {
			if !valid[j] {
				if dim {
					c.id[o+j] = 0
				}
				continue
			}
			b := c.bdata[c.boffs[c.vpos]:c.boffs[c.vpos+1]]
			c.vpos++
			if dim {
				c.id[o+j] = c.intern.str(b)
			}
			if c.hash != nil {
				c.hash[o+j] = hashBytes(b)
			}
		}
	default:
		for j := range valid {
			if !valid[j] {
				if dim {
					c.id[o+j] = 0
				}
				continue
			}
			var v uint64
			switch {
			case c.i64 != nil:
				v = uint64(c.i64[c.vpos])
			case c.f64 != nil:
				v = math.Float64bits(c.f64[c.vpos])
			default:
				v = uint64(c.bits[c.vpos/8]>>(c.vpos%8)) & 1
			}
			c.vpos++
			if c.val != nil {
				c.val[o+j] = v
			}
			if dim {
				c.id[o+j] = c.intern.int(int64(v))
			}
			if c.hash != nil {
				c.hash[o+j] = hashUint64(v)
			}
		}
	}
}
