// gobpeer decodes, with Go's own encoding/gob, the gob streams our Rust
// plugin writes, and prints them in a canonical text form the Rust tests
// compare against. It mirrors the Go types Packer decodes into (same field
// names, same registered gob names) using the standard library only.
//
// Usage:
//
//	gobpeer spec module|vendored < stream   # an hcldec.ObjectSpec
//	gobpeer command-finished < stream        # a CommandFinished
package main

import (
	"bytes"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// ObjectSpec mirrors hcldec.ObjectSpec.
type ObjectSpec map[string]Spec

// Spec mirrors the hcldec.Spec interface (only its dynamic type matters to gob).
type Spec interface{}

// AttrSpec mirrors hcldec.AttrSpec.
type AttrSpec struct {
	Name     string
	Type     Type
	Required bool
}

// BlockSpec mirrors hcldec.BlockSpec.
type BlockSpec struct {
	TypeName string
	Nested   Spec
	Required bool
}

// BlockListSpec mirrors hcldec.BlockListSpec.
type BlockListSpec struct {
	TypeName string
	Nested   Spec
	MinItems int
	MaxItems int
}

// Type mirrors cty.Type: a GobDecoder whose bytes are a nested gob stream of
// gobType, as go-cty (before 1.11, and the fork Packer uses) encodes it.
type Type struct{ impl interface{} }

type gobType struct {
	Version int
	Impl    interface{}
}

type primitiveType struct{ Kind uint8 }
type typeList struct{ ElementTypeT Type }
type typeMap struct{ ElementTypeT Type }

// GobDecode decodes a cty.Type the way cty's GobDecode does: one complete
// gob stream holding a gobType with Version 0.
func (t *Type) GobDecode(buf []byte) error {
	dec := gob.NewDecoder(bytes.NewReader(buf))
	var g gobType
	if err := dec.Decode(&g); err != nil {
		return fmt.Errorf("cty.Type: %w", err)
	}
	if g.Version != 0 {
		return fmt.Errorf("cty.Type: unsupported version %d", g.Version)
	}
	if err := expectEOF(dec); err != nil {
		return fmt.Errorf("cty.Type: %w", err)
	}
	t.impl = g.Impl
	return nil
}

// CommandFinished mirrors the SDK's rpc.CommandFinished.
type CommandFinished struct {
	ExitStatus int
}

func expectEOF(dec *gob.Decoder) error {
	var extra interface{}
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return fmt.Errorf("trailing data after the value (%v)", err)
	}
	return nil
}

func typeText(t Type) string {
	switch impl := t.impl.(type) {
	case primitiveType:
		switch impl.Kind {
		case 'S':
			return "string"
		case 'N':
			return "number"
		case 'B':
			return "bool"
		}
		return fmt.Sprintf("primitive(%d)", impl.Kind)
	case typeList:
		return "list(" + typeText(impl.ElementTypeT) + ")"
	case typeMap:
		return "map(" + typeText(impl.ElementTypeT) + ")"
	}
	return fmt.Sprintf("unknown(%T)", t.impl)
}

func specText(s Spec, indent string) string {
	switch v := s.(type) {
	case ObjectSpec:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var b strings.Builder
		b.WriteString("object {\n")
		for _, k := range keys {
			fmt.Fprintf(&b, "%s  %q: %s\n", indent, k, specText(v[k], indent+"  "))
		}
		b.WriteString(indent + "}")
		return b.String()
	case *AttrSpec:
		return fmt.Sprintf("attr name=%q type=%s required=%t", v.Name, typeText(v.Type), v.Required)
	case *BlockSpec:
		return fmt.Sprintf("block type_name=%q required=%t nested=%s", v.TypeName, v.Required, specText(v.Nested, indent))
	case *BlockListSpec:
		return fmt.Sprintf("block_list type_name=%q min=%d max=%d nested=%s", v.TypeName, v.MinItems, v.MaxItems, specText(v.Nested, indent))
	case nil:
		return "nil"
	}
	return fmt.Sprintf("unknown(%T)", s)
}

func run() error {
	if len(os.Args) < 2 {
		return errors.New("usage: gobpeer spec module|vendored | gobpeer command-finished")
	}
	dec := gob.NewDecoder(os.Stdin)
	switch os.Args[1] {
	case "spec":
		if len(os.Args) != 3 {
			return errors.New("spec needs a flavour: module or vendored")
		}
		hcldec := "github.com/hashicorp/hcl/v2/hcldec"
		switch os.Args[2] {
		case "module":
		case "vendored":
			hcldec = "github.com/hashicorp/packer/vendor/" + hcldec
		default:
			return fmt.Errorf("unknown flavour %q", os.Args[2])
		}
		// The names Packer's binary registers: the full import path for the
		// named map type, the short form for pointers, cty's hard-coded names.
		gob.RegisterName(hcldec+".ObjectSpec", ObjectSpec{})
		gob.RegisterName("*hcldec.AttrSpec", &AttrSpec{})
		gob.RegisterName("*hcldec.BlockSpec", &BlockSpec{})
		gob.RegisterName("*hcldec.BlockListSpec", &BlockListSpec{})
		gob.RegisterName("github.com/zclconf/go-cty/cty.primitiveType", primitiveType{})
		gob.RegisterName("github.com/zclconf/go-cty/cty.typeList", typeList{})
		gob.RegisterName("github.com/zclconf/go-cty/cty.typeMap", typeMap{})
		spec := ObjectSpec{}
		if err := dec.Decode(&spec); err != nil {
			return err
		}
		if err := expectEOF(dec); err != nil {
			return err
		}
		fmt.Println(specText(spec, ""))
	case "command-finished":
		var cmd CommandFinished
		if err := dec.Decode(&cmd); err != nil {
			return err
		}
		if err := expectEOF(dec); err != nil {
			return err
		}
		fmt.Printf("ExitStatus=%d\n", cmd.ExitStatus)
	default:
		return fmt.Errorf("unknown mode %q", os.Args[1])
	}
	return nil
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "gobpeer:", err)
		os.Exit(1)
	}
}
