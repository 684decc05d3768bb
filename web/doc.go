// Package web holds the network edges that speak HTTP: the WebSocket ingest that
// mod_audio_fork connects to, the HTTP API and the metrics endpoint.
package web
