// Package fssim simulates FreeSWITCH as mediafork sees it, built from what was
// recorded from a real FreeSWITCH 1.10.12 with mod_audio_fork
// (../shared/freeswitch): the mod_audio_fork WebSocket client, with its exact
// upgrade request, metadata frame, 20 ms L16 frames, close 1000 and the
// zero-length frame of graceful shutdown. Tests, `mediafork demo` and the
// benchmarks share it.
package fssim
