// Package tests holds strata's integration tests: real FUSE mounts of the
// strata binary, compared against kernel overlayfs over the same layers.
// They run as root (FUSE with DirectMount, overlayfs, mknod, trusted.*
// xattrs) and fail loudly, never skip, when something they need is missing.
package tests
