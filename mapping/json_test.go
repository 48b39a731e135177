package mapping

import (
	"fmt"
	"strings"
	"testing"
)

func TestBadKey(t *testing.T) {
	var many []string
	for i := range 40 {
		many = append(many, fmt.Sprintf(`"k%d":%d`, i, i))
	}
	// want is the name badKey reports, "-" for none.
	for doc, want := range map[string]string{
		`{"a":1,"b":[{"a":1,"b":2},{"a":{"x":[1,{"y":1,"y":2}]}}]}`: "y",
		`{"a":1,"b":[{"a":1,"b":2}]}`:                               "-",
		`{"a":1,"a\u0062":1,"ab":2}`:                                "ab",
		`{"a":{"":1}}`:                                              "",
		`[[],{},"x",{"a":[]}]`:                                      "-",
		`{` + strings.Join(many, ",") + `}`:                         "-",
		`{` + strings.Join(many, ",") + `,"k3":1}`:                  "k3",
		`{` + strings.Join(many, ",") + `,"k39":1}`:                 "k39",
		`{"k20":1,` + strings.Join(many, ",") + `}`:                 "k20",
	} {
		k, ok := badKey([]byte(doc))
		if !ok {
			k = "-"
		}
		if k != want {
			t.Errorf("%s: %q, want %q", doc, k, want)
		}
	}
}
