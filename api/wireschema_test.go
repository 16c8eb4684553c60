package api

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// wireSchemas names the OpenAPI schema of each wire type: the answers,
// the stream events and frames, and the request bodies.
var wireSchemas = map[reflect.Type]string{
	reflect.TypeFor[errorBody]():             "Error",
	reflect.TypeFor[successResponse]():       "Success",
	reflect.TypeFor[healthResponse]():        "Health",
	reflect.TypeFor[readyResponse]():         "Ready",
	reflect.TypeFor[diskStatus]():            "DiskStatus",
	reflect.TypeFor[containerResponse]():     "Container",
	reflect.TypeFor[containerInfoResponse](): "ContainerInfo",
	reflect.TypeFor[containerMissing]():      "ContainerMissing",
	reflect.TypeFor[usage]():                 "Usage",
	reflect.TypeFor[extendResponse]():        "Extend",
	reflect.TypeFor[runResponse]():           "Run",
	reflect.TypeFor[backgroundResponse]():    "Background",
	reflect.TypeFor[process]():               "Process",
	reflect.TypeFor[processesResponse]():     "Processes",
	reflect.TypeFor[processResponse]():       "ProcessAnswer",
	reflect.TypeFor[processLogResponse]():    "ProcessLog",
	reflect.TypeFor[outputEvent]():           "OutputEvent",
	reflect.TypeFor[streamErrorEvent]():      "StreamError",
	reflect.TypeFor[terminalMessage]():       "TerminalMessage",
	reflect.TypeFor[syncResponse]():          "Sync",
	reflect.TypeFor[filesResponse]():         "Files",
	reflect.TypeFor[fileInfo]():              "FileInfo",
	reflect.TypeFor[installResponse]():       "Install",
	reflect.TypeFor[installedPkg]():          "InstalledPackage",
	reflect.TypeFor[installError]():          "InstallError",
	reflect.TypeFor[statusResponse]():        "Status",
	reflect.TypeFor[clusterNode]():           "ClusterNode",
	reflect.TypeFor[drainResponse]():         "Drain",
	reflect.TypeFor[FileNode]():              "FileNode",
	reflect.TypeFor[createRequest]():         "CreateRequest",
	reflect.TypeFor[sessionRequest]():        "SessionRequest",
	reflect.TypeFor[executeRequest]():        "ExecuteRequest",
	reflect.TypeFor[shellRequest]():          "ShellRequest",
	reflect.TypeFor[syncRequest]():           "SyncRequest",
	reflect.TypeFor[installRequest]():        "InstallRequest",
}

// requestOnly are the schemas of request bodies: they may document what
// the daemon accepts and ignores.
var requestOnly = map[string]bool{"FileNode": true, "CreateRequest": true, "SessionRequest": true,
	"ExecuteRequest": true, "ShellRequest": true, "SyncRequest": true, "InstallRequest": true}

// jsonFields lists the JSON names of t's fields, embedded structs' included.
func jsonFields(t reflect.Type) []string {
	var out []string
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case name == "-":
		case f.Anonymous && name == "":
			out = append(out, jsonFields(f.Type)...)
		case f.IsExported():
			if name == "" {
				name = f.Name
			}
			out = append(out, name)
		}
	}
	return out
}

type schemaDoc struct {
	Ref        string                     `json:"$ref"`
	Properties map[string]json.RawMessage `json:"properties"`
	AllOf      []schemaDoc                `json:"allOf"`
}

// schemaProperties lists the properties of the named schema, through allOf and $ref.
func schemaProperties(t *testing.T, all map[string]schemaDoc, s schemaDoc) []string {
	if s.Ref != "" {
		name := strings.TrimPrefix(s.Ref, "#/components/schemas/")
		ref, ok := all[name]
		if !ok {
			t.Fatalf("$ref %s names no schema", s.Ref)
		}
		return schemaProperties(t, all, ref)
	}
	var out []string
	for name := range s.Properties {
		out = append(out, name)
	}
	for _, sub := range s.AllOf {
		out = append(out, schemaProperties(t, all, sub)...)
	}
	return out
}

// TestWireTypesMatchTheirSchemas fails when a wire type has a field its
// schema lacks (an answer the document does not describe, even one only
// sent in a case no test provokes) or the schema a property the type lacks.
func TestWireTypesMatchTheirSchemas(t *testing.T) {
	var doc struct {
		Components struct {
			Schemas map[string]schemaDoc `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(openAPIDocument, &doc); err != nil {
		t.Fatal(err)
	}
	for typ, name := range wireSchemas {
		s, ok := doc.Components.Schemas[name]
		if !ok {
			t.Errorf("%s: no schema %s", typ, name)
			continue
		}
		fields, props := jsonFields(typ), schemaProperties(t, doc.Components.Schemas, s)
		for _, f := range fields {
			if !slices.Contains(props, f) {
				t.Errorf("%s sends %q, which schema %s does not have", typ, f, name)
			}
		}
		for _, p := range props {
			// A request may carry what the daemon ignores (FileNode: an echoed listing's path and size).
			if !slices.Contains(fields, p) && !requestOnly[name] {
				t.Errorf("schema %s has %q, which %s does not send", name, p, typ)
			}
		}
	}
}

// TestWireSchemaCheckCanFail makes sure the comparison above sees a field.
func TestWireSchemaCheckCanFail(t *testing.T) {
	type extra struct {
		errorBody
		Secret string `json:"secret"`
	}
	if got := jsonFields(reflect.TypeFor[extra]()); !slices.Equal(got, []string{"success", "error", "code", "secret"}) {
		t.Fatalf("fields %v", got)
	}
}
