//go:build !race

package main

// raceBuild: these tests were built without -race, and so is the daemon they run.
const raceBuild = false
