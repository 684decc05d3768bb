// Package realswitch holds mediafork's integration tests against a real
// FreeSWITCH 1.10.12 with mod_audio_fork and mod_audio_stream (the build in
// ../shared/freeswitch/dist, its dialplan: extensions 9000/9001/9102/...).
// The package has no code of its own: its tests build the mediafork binary,
// run `mediafork serve` as a process, place loopback calls on the switch over
// the event socket and check the packets and tones that arrive at UDP
// receivers — the same path as in production, with nothing simulated.
//
// The tests run when MEDIAFORK_TEST_ESL=host:port names the switch's event
// socket (password MEDIAFORK_TEST_ESL_PASSWORD, default ClueCon); the switch
// must run on this machine, since it is given 127.0.0.1 URLs and certificate
// files. Without it they are skipped with one line, except under CI=true,
// where a missing switch fails the package. MEDIAFORK_TEST_FS_CLI, the path of
// fs_cli, makes the fs_cli test type its commands with the real fs_cli
// instead of sending them over the event socket as fs_cli does.
// MEDIAFORK_TEST_ESL_JAMBONZ names a second install whose mod_audio_fork is
// jambonz's (talk-back streamed down the fork's WebSocket): the talk-back
// test runs on both; without it, on the stock modules only (under CI=true
// it fails).
//
// The tests share the switch and the ports its dialplan hard-codes (the
// outbound socket 127.0.0.1:8084 and the receiver 127.0.0.1:19010 of
// extension 9102), so they run one after another. Rules match only the calls
// of the test that placed them, and a test checks that its own calls are gone
// at the end, so other users of the switch do not disturb them — except
// another mediafork connected to it while the fs_cli test runs: every
// mediafork on a switch answers the `mediafork` alias.
package realswitch
