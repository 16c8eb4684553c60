// Package kubernetes holds the example manifests; its test decodes each one
// strictly with the Kubernetes API types, so a misspelt field or a wrong
// type fails here, without a cluster.
package kubernetes

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/yaml"
)

// decodeAll strictly decodes every document of every manifest, by kind.
func decodeAll(t *testing.T) map[string][]any {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	byKind := map[string][]any{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range bytes.Split(data, []byte("\n---\n")) {
			var head struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
			}
			if err := yaml.Unmarshal(doc, &head); err != nil {
				t.Fatalf("%s doc %d: %v", f, i, err)
			}
			var obj any
			switch head.APIVersion + " " + head.Kind {
			case "v1 Namespace":
				obj = &corev1.Namespace{}
			case "v1 Service":
				obj = &corev1.Service{}
			case "apps/v1 DaemonSet":
				obj = &appsv1.DaemonSet{}
			case "apps/v1 StatefulSet":
				obj = &appsv1.StatefulSet{}
			case "networking.k8s.io/v1 NetworkPolicy":
				obj = &networkingv1.NetworkPolicy{}
			default:
				t.Fatalf("%s doc %d: kind %q %q has no decoder here", f, i, head.APIVersion, head.Kind)
			}
			if err := yaml.UnmarshalStrict(doc, obj); err != nil {
				t.Fatalf("%s doc %d (%s): %v", f, i, head.Kind, err)
			}
			byKind[head.Kind] = append(byKind[head.Kind], obj)
		}
	}
	return byKind
}

func TestManifestsDecodeStrictly(t *testing.T) {
	objs := decodeAll(t)
	ds := objs["DaemonSet"]
	if len(ds) != 1 {
		t.Fatalf("%d DaemonSets, want 1", len(ds))
	}
	d := ds[0].(*appsv1.DaemonSet)
	spec := d.Spec.Template.Spec
	if d.Namespace != "servcraft" || !spec.HostPID {
		t.Errorf("DaemonSet: namespace %q hostPID %v", d.Namespace, spec.HostPID)
	}
	c := spec.Containers[0]
	if c.SecurityContext == nil || c.SecurityContext.Privileged == nil || !*c.SecurityContext.Privileged {
		t.Error("DaemonSet: servcraftd is not privileged")
	}
	bidi := false
	for _, m := range c.VolumeMounts {
		if m.MountPath == "/var/lib/servcraftd" && m.MountPropagation != nil && *m.MountPropagation == corev1.MountPropagationBidirectional {
			bidi = true
		}
	}
	if !bidi {
		t.Error("DaemonSet: state is not mounted with Bidirectional propagation")
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Error("DaemonSet: readiness is not /readyz")
	}
	if d.Spec.Selector == nil || d.Spec.Selector.MatchLabels["app.kubernetes.io/name"] != d.Spec.Template.Labels["app.kubernetes.io/name"] {
		t.Error("DaemonSet: selector does not match the pod labels")
	}
	if len(objs["NetworkPolicy"]) != 1 {
		t.Errorf("want a NetworkPolicy that admits only servcraftd to etcd, got %d", len(objs["NetworkPolicy"]))
	} else if np := objs["NetworkPolicy"][0].(*networkingv1.NetworkPolicy); np.Spec.PodSelector.MatchLabels["app.kubernetes.io/name"] != "etcd" ||
		len(np.Spec.Ingress) == 0 || np.Spec.Ingress[0].From[0].PodSelector.MatchLabels["app.kubernetes.io/name"] != "servcraftd" {
		t.Errorf("NetworkPolicy: %+v, want etcd's client port open to servcraftd's pods only", np.Spec)
	}
	for _, a := range c.Args {
		if strings.HasPrefix(a, "--cluster-etcd=") && !strings.HasPrefix(a, "--cluster-etcd=https://") {
			t.Errorf("DaemonSet: %s, want etcd over TLS", a)
		}
	}
	if !slices.Contains(c.Args, "--etcd-ca-file=/etc/servcraft/etcd/ca.crt") || !slices.Contains(c.Args, "--etcd-cert-file=/etc/servcraft/etcd/client.crt") {
		t.Errorf("DaemonSet: no etcd client certificate in %v", c.Args)
	}
	if len(objs["Service"]) < 2 || len(objs["StatefulSet"]) != 1 || len(objs["Namespace"]) != 1 {
		t.Errorf("want a servcraftd and an etcd Service, an etcd StatefulSet, the namespace; got %d, %d, %d",
			len(objs["Service"]), len(objs["StatefulSet"]), len(objs["Namespace"]))
	}
}
