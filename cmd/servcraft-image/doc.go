// Command servcraft-image turns a root filesystem directory into a
// deterministic single-layer OCI image archive that containerd imports
// under a given name (e.g. localhost/servcraft/node:20).
//
//	servcraft-image --rootfs DIR --name localhost/servcraft/node:20 --out node20.tar
//
// The archive is a tar of an OCI image layout (oci-layout, index.json,
// blobs/sha256/...). Its index.json manifest carries the annotations
// org.opencontainers.image.ref.name (the tag) and io.containerd.image.name
// (the full name), so `ctr -n servcraft images import` and containerd's
// client.Import register it under the full name. Entries are sorted, times
// are fixed and owners numeric, so the same tree always gives the same digest.
package main
