package settings

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// The packages whose components take their settings when they are built.
var checkedPackages = []string{"esl", "web", "mediafork", "cmd/mediafork", "checkpoint"}

// readOnly are the package-level variables allowed besides sentinel errors
// (errors.New, fmt.Errorf) and `var _ T = ...` assertions: tables nothing
// writes after init, each with why it is no setting. A new entry needs the
// same reason; a setting belongs in its component's settings struct.
var readOnly = map[string]string{
	"esl.knownTypes":               "the protocol's content types",
	"esl.audioStreamConnectErrors": "mod_audio_stream's error codes",
	"esl.SubscribedEvents":         "the events both modules send",
	"web.consoleFiles":             "the console's embedded files",
	"web.queryParams":              "the ingest URL's parameters",
	"web.logLevels":                "slog's level names",
	"web.RefusalCodes":             "the HTTP statuses metrics count",
	"web.safeHost":                 "a compiled pattern",
	"web.secretRE":                 "a compiled pattern",
	"mediafork.b64":                "an encoding",
	"mediafork.epoch":              "the process's start, the media path's monotonic origin: set once at init",
	"mediafork.encodings":          "the codec table",
	"mediafork.protocols":          "the output protocol table",
	"mediafork.silencePeak":        "a constant computed with math.Pow",
	"mediafork.templateVar":        "a compiled pattern",
	"mediafork.Triggers":           "the fork triggers metrics label",
	"mediafork.RetryReasonList":    "the retry reasons metrics label",
	"mediafork.MetadataFields":     "the signaling fields a rule may set",
	"cmd/mediafork.credRE":         "a compiled pattern",
	"cmd/mediafork.descRE":         "a compiled pattern",
}

// No package variable is a setting: settings are values each component is
// given when it is built, so that tests can build two with different ones side
// by side (t.Parallel) and no test depends on what another left behind. A
// package-level var is allowed only for a sentinel error or a read-only table
// (readOnly), and nothing in the package, its tests included, writes to one.
func TestNoMutablePackageVariables(t *testing.T) {
	t.Parallel()
	var problems []string
	used := map[string]bool{}
	for _, pkg := range checkedPackages {
		dir := filepath.Join("..", "..", filepath.FromSlash(pkg))
		files := parsePackage(t, dir)
		vars := map[string]bool{} // the package's variables, by name
		for name, f := range files {
			if strings.HasSuffix(name, "_test.go") {
				continue
			}
			for _, decl := range f.Decls {
				gd, ok := decl.(*ast.GenDecl)
				if !ok || gd.Tok != token.VAR {
					continue
				}
				for _, spec := range gd.Specs {
					vs := spec.(*ast.ValueSpec)
					for i, id := range vs.Names {
						if id.Name == "_" {
							continue
						}
						vars[id.Name] = true
						key := pkg + "." + id.Name
						switch {
						case i < len(vs.Values) && isSentinelError(vs.Values[i]):
						case readOnly[key] != "":
							used[key] = true
						default:
							problems = append(problems, fmt.Sprintf("%s: var %s is package state: give it to the component that uses it "+
								"(its settings struct), or make it a const; a read-only table goes in readOnly with its reason",
								filepath.Join(pkg, name), id.Name))
						}
					}
				}
			}
		}
		for name, f := range files {
			for _, w := range writes(f, vars) {
				problems = append(problems, fmt.Sprintf("%s: %s: package state, written", filepath.Join(pkg, name), w))
			}
		}
	}
	for key, why := range readOnly {
		if why != "" && !used[key] {
			problems = append(problems, fmt.Sprintf("readOnly lists %s, which is gone: take it out", key))
		}
	}
	sort.Strings(problems)
	for _, p := range problems {
		t.Error(p)
	}
}

func parsePackage(t *testing.T, dir string) map[string]*ast.File {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	files := map[string]*ast.File{}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, e.Name()), nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = f
	}
	if len(files) == 0 {
		t.Fatalf("no Go files in %s", dir)
	}
	return files
}

// isSentinelError: errors.New("...") or fmt.Errorf("...").
func isSentinelError(e ast.Expr) bool {
	call, ok := e.(*ast.CallExpr)
	if !ok {
		return false
	}
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok {
		return false
	}
	pkg, ok := sel.X.(*ast.Ident)
	return ok && (pkg.Name == "errors" && sel.Sel.Name == "New" || pkg.Name == "fmt" && sel.Sel.Name == "Errorf")
}

// writes lists the statements of f that assign to one of vars (or to an
// element or field of it), increment it or take its address, at any depth.
// A name a function declares itself (a parameter, a local) is not the
// package's: the scopes are followed as far as names go.
func writes(f *ast.File, vars map[string]bool) []string {
	var out []string
	var walk func(n ast.Node, shadowed map[string]bool)
	root := func(e ast.Expr) *ast.Ident {
		for {
			switch x := e.(type) {
			case *ast.Ident:
				return x
			case *ast.IndexExpr:
				e = x.X
			case *ast.SelectorExpr:
				e = x.X
			case *ast.StarExpr:
				e = x.X
			case *ast.ParenExpr:
				e = x.X
			default:
				return nil
			}
		}
	}
	check := func(e ast.Expr, shadowed map[string]bool, what string) {
		if id := root(e); id != nil && vars[id.Name] && !shadowed[id.Name] {
			out = append(out, what+" the package variable "+id.Name)
		}
	}
	walk = func(n ast.Node, shadowed map[string]bool) {
		ast.Inspect(n, func(n ast.Node) bool {
			switch x := n.(type) {
			case *ast.FuncLit, *ast.FuncDecl:
				inner := map[string]bool{}
				for k := range shadowed {
					inner[k] = true
				}
				var ft *ast.FuncType
				var body *ast.BlockStmt
				if fl, ok := x.(*ast.FuncLit); ok {
					ft, body = fl.Type, fl.Body
				} else {
					fd := x.(*ast.FuncDecl)
					ft, body = fd.Type, fd.Body
					if fd.Recv != nil {
						declare(inner, fd.Recv)
					}
				}
				declare(inner, ft.Params)
				declare(inner, ft.Results)
				if body != nil {
					ast.Inspect(body, func(n ast.Node) bool { // the function's own names
						switch d := n.(type) {
						case *ast.AssignStmt:
							if d.Tok == token.DEFINE {
								for _, l := range d.Lhs {
									if id, ok := l.(*ast.Ident); ok {
										inner[id.Name] = true
									}
								}
							}
						case *ast.ValueSpec:
							for _, id := range d.Names {
								inner[id.Name] = true
							}
						case *ast.RangeStmt:
							if d.Tok == token.DEFINE {
								for _, e := range []ast.Expr{d.Key, d.Value} {
									if id, ok := e.(*ast.Ident); ok {
										inner[id.Name] = true
									}
								}
							}
						case *ast.FuncLit:
							return false // its own, walked on its own
						}
						return true
					})
					walk(body, inner)
				}
				return false
			case *ast.AssignStmt:
				if x.Tok != token.DEFINE {
					for _, l := range x.Lhs {
						check(l, shadowed, "assigns")
					}
				}
			case *ast.IncDecStmt:
				check(x.X, shadowed, "changes")
			case *ast.UnaryExpr:
				if x.Op == token.AND {
					check(x.X, shadowed, "takes the address of")
				}
			}
			return true
		})
	}
	walk(f, map[string]bool{})
	return out
}

// declare adds the names of fields (parameters, results, a receiver).
func declare(names map[string]bool, fl *ast.FieldList) {
	if fl == nil {
		return
	}
	for _, f := range fl.List {
		for _, id := range f.Names {
			names[id.Name] = true
		}
	}
}
