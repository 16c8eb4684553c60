// Package runtime is the session manager: everything that talks to
// containerd. It ensures the image, builds each session's hardened OCI spec,
// runs the container and its task, executes programs in it with timeouts and
// output caps, and tears sessions down without leaving anything behind.
// It never imports gin or any CLI library.
package runtime
