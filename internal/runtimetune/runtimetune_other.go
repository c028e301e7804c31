//go:build !unix

package runtimetune

// Reexec does nothing where the process cannot replace itself.
func Reexec() {}
