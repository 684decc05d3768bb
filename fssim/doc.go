// Package fssim simulates FreeSWITCH as mediafork sees it, built from what was
// recorded from a real FreeSWITCH 1.10.12 (../shared/freeswitch/captures):
// mod_audio_fork's WebSocket client, with its exact upgrade request, metadata
// frame, 20 ms L16 frames, close 1000 and the zero-length frame of graceful
// shutdown; and amigniter's mod_audio_stream (captures/audio_stream): its
// uuid_audio_stream api and CUSTOM events, its upgrade request byte for byte,
// the audio it queues during a slow upgrade and flushes before the metadata,
// its close 1000 "Normal closure", and no reconnect. SetModules says which of
// the two are loaded (module_exists). Tests, `mediafork demo` and the
// benchmarks share it.
package fssim
