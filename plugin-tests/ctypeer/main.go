// ctypeer prints cty JSON documents made by the real go-cty (Debian's
// golang-github-zclconf-go-cty-dev, GOPATH mode), one per line as
// "<case name>\t<document>", the way Packer builds Prepare's second argument:
// ctyjson.Marshal(value, cty.DynamicPseudoType). The Rust tests decode each
// document with decode_cty_json and compare with the values they expect.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"
)

type testCase struct {
	name  string
	value cty.Value
	// When set, the value is marshalled with this type instead of as
	// dynamic, and framed as {"value","type"} like marshalDynamic does:
	// the only way cty writes non-null nested dynamic wrappers.
	declared *cty.Type
}

func main() {
	withDynamic := cty.Object(map[string]cty.Type{
		"any":  cty.DynamicPseudoType,
		"list": cty.List(cty.DynamicPseudoType),
		"name": cty.String,
	})
	cases := []testCase{
		{name: "protocol_example", value: cty.ObjectVal(map[string]cty.Value{
			"name":  cty.StringVal("bar"),
			"count": cty.NumberIntVal(3),
			"tags":  cty.MapVal(map[string]cty.Value{"a": cty.StringVal("b")}),
			"disk": cty.ListVal([]cty.Value{cty.ObjectVal(map[string]cty.Value{
				"size": cty.NumberIntVal(10),
			})}),
		})},
		{name: "strings", value: cty.ObjectVal(map[string]cty.Value{
			"html":    cty.StringVal("<b> & </b>"),
			"escapes": cty.StringVal("quote \" backslash \\ newline \n tab \t"),
			"unicode": cty.StringVal("é ✓ 𝄞"),
			"empty":   cty.StringVal(""),
		})},
		{name: "numbers", value: cty.ObjectVal(map[string]cty.Value{
			"small":    cty.NumberIntVal(3),
			"negative": cty.NumberIntVal(-42),
			"u64":      cty.MustParseNumberVal("12345678901234567890"),
			"huge":     cty.MustParseNumberVal("123456789012345678901234567890"),
			"half":     cty.NumberFloatVal(0.5),
			"third":    cty.NumberFloatVal(1.0 / 3),
			"tiny":     cty.MustParseNumberVal("0.0000001"),
			"zero":     cty.Zero,
		})},
		{name: "bools", value: cty.ObjectVal(map[string]cty.Value{
			"yes": cty.True,
			"no":  cty.False,
		})},
		{name: "nulls", value: cty.ObjectVal(map[string]cty.Value{
			"string":  cty.NullVal(cty.String),
			"number":  cty.NullVal(cty.Number),
			"list":    cty.NullVal(cty.List(cty.String)),
			"block":   cty.NullVal(cty.Object(map[string]cty.Type{"a": cty.String})),
			"dynamic": cty.NullVal(cty.DynamicPseudoType),
		})},
		{name: "collections", value: cty.ObjectVal(map[string]cty.Value{
			"set":         cty.SetVal([]cty.Value{cty.StringVal("b"), cty.StringVal("a")}),
			"tuple":       cty.TupleVal([]cty.Value{cty.StringVal("a"), cty.NumberIntVal(1), cty.False}),
			"empty_list":  cty.ListValEmpty(cty.String),
			"empty_map":   cty.MapValEmpty(cty.Number),
			"nested_list": cty.ListVal([]cty.Value{cty.ListVal([]cty.Value{cty.StringVal("x")}), cty.ListValEmpty(cty.String)}),
			"map_of_list": cty.MapVal(map[string]cty.Value{"k": cty.ListVal([]cty.Value{cty.NumberIntVal(1), cty.NumberIntVal(2)})}),
			"labelled": cty.MapVal(map[string]cty.Value{
				"first": cty.ObjectVal(map[string]cty.Value{"v": cty.StringVal("1")}),
			}),
			"object_in_object": cty.ObjectVal(map[string]cty.Value{
				"inner": cty.ObjectVal(map[string]cty.Value{"deep": cty.True}),
			}),
		})},
		{name: "nested_dynamic", declared: &withDynamic, value: cty.ObjectVal(map[string]cty.Value{
			"any": cty.ObjectVal(map[string]cty.Value{
				"n": cty.NumberIntVal(1),
				"l": cty.ListVal([]cty.Value{cty.StringVal("x")}),
			}),
			"list": cty.ListVal([]cty.Value{cty.StringVal("s")}),
			"name": cty.StringVal("n"),
		})},
		{name: "empty_body", value: cty.EmptyObjectVal},
	}
	for _, c := range cases {
		var doc []byte
		var err error
		if c.declared == nil {
			doc, err = ctyjson.Marshal(c.value, cty.DynamicPseudoType)
		} else {
			doc, err = frame(c.value, *c.declared)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "ctypeer: %s: %v\n", c.name, err)
			os.Exit(1)
		}
		fmt.Printf("%s\t%s\n", c.name, doc)
	}
}

func frame(value cty.Value, declared cty.Type) ([]byte, error) {
	converted, err := ctyjson.Marshal(value, declared)
	if err != nil {
		return nil, err
	}
	typeJSON, err := ctyjson.MarshalType(declared)
	if err != nil {
		return nil, err
	}
	return json.Marshal(struct {
		Value json.RawMessage `json:"value"`
		Type  json.RawMessage `json:"type"`
	}{converted, typeJSON})
}
