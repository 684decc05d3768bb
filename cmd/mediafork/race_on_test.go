//go:build race

package main

// raceBuild: these tests were built with -race, and so is the daemon they run.
const raceBuild = true
