package fssim

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// What the real switch showed the realswitch tests, byte for byte where the
// simulator answers: these are its differences from the simulator, fixed.

// apiRaw sends one command (lines joined with CRLF, as eslgo ends them) on an
// authenticated connection and returns the api/response body.
func apiRaw(t *testing.T, c net.Conn, r *bufio.Reader, lines ...string) string {
	t.Helper()
	io.WriteString(c, strings.Join(lines, "\r\n")+"\r\n\r\n")
	var n int
	_, err := fmt.Fscanf(r, "Content-Type: api/response\nContent-Length: %d\n\n", &n)
	require.NoError(t, err)
	return readN(t, r, n)
}

func authed(t *testing.T, sw *Switch) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, r := dialESL(t, sw.Addr())
	readN(t, r, len("Content-Type: auth/request\n\n"))
	io.WriteString(c, "auth ClueCon\n\n")
	readN(t, r, len("Content-Type: command/reply\nReply-Text: +OK accepted\n\n"))
	return c, r
}

// fs_cli sends every line with console_execute: true, which expands aliases
// over ESL too (mediafork's alias `mediafork`); echo adds no newline; `show
// channels count`; a variable that is not set reads _undef_.
func TestConsoleExecuteAndReplies(t *testing.T) {
	sw := newStreamSwitch(t)
	c, r := authed(t, sw)
	assert.Equal(t, "+OK\n", apiRaw(t, c, r, "api alias add mediafork echo [mediafork]"))
	assert.Equal(t, "-ERR mediafork Command not found!\n", apiRaw(t, c, r, "api mediafork status"), "no alias without console_execute")
	assert.Equal(t, "\nExpand Alias [mediafork]->[echo [mediafork] status]\n\n[mediafork] status",
		apiRaw(t, c, r, "api mediafork status", "console_execute: true"))
	assert.Equal(t, "-ERR nosuch x Command not found!\n", apiRaw(t, c, r, "api nosuch x", "console_execute: true"))
	assert.Equal(t, "\nExpand Alias [mediafork]->[echo [mediafork] stop u]\n\n[mediafork] stop u", sw.FsCli("mediafork stop u"))
	assert.Equal(t, "foo bar", apiRaw(t, c, r, "api echo foo bar"))
	assert.Equal(t, "-ERR no reply\n", apiRaw(t, c, r, "api echo"))

	assert.Equal(t, "\n0 total.\n", apiRaw(t, c, r, "api show channels count"))
	call := sw.Answer(CallOptions{Vars: map[string]string{"a": "b"}})
	assert.Equal(t, "\n1 total.\n", apiRaw(t, c, r, "api show channels count"))
	assert.Equal(t, "b", apiRaw(t, c, r, "api uuid_getvar "+call.UUID+" a"))
	assert.Equal(t, "_undef_", apiRaw(t, c, r, "api uuid_getvar "+call.UUID+" nosuchvar"))
}

// mod_audio_fork segfaults FreeSWITCH on a URL of 710 bytes or more, whether
// the start came by api or by bgapi; 709 bytes start.
func TestLongURLCrashes(t *testing.T) {
	for _, verb := range []string{"api", "bgapi"} {
		t.Run(verb, func(t *testing.T) {
			sw := newStreamSwitch(t)
			call := sw.Answer(CallOptions{})
			base := "ws://127.0.0.1:9/fork/" + call.UUID + "?cred="
			ok := base + strings.Repeat("a", CrashURLLength-1-len(base))
			assert.Equal(t, "+OK Success\n", sw.api("uuid_audio_fork", call.UUID+" start "+ok+" mono 8k", nil))
			c, r := authed(t, sw)
			io.WriteString(c, verb+" uuid_audio_fork "+call.UUID+" start "+ok+"a mono 8000 mediafork {}\n\n")
			if verb == "bgapi" {
				line, err := r.ReadString('\n')
				require.NoError(t, err)
				assert.Equal(t, "Content-Type: command/reply\n", line, "the job is accepted first")
			}
			_, err := io.ReadAll(r)
			require.NoError(t, err, "the connection just closes")
			assert.Nil(t, sw.Call(call.UUID), "the calls died with it")
		})
	}
}

// serverCert is a certificate for hosts (IPs as IP SANs, names as DNS SANs),
// self-signed or signed by ca.
func serverCert(t *testing.T, ca *tls.Certificate, ips []net.IP, dns ...string) (tls.Certificate, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: ips, DNSNames: dns,
		IsCA: ca == nil, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	parent, signer := tmpl, any(key)
	if ca != nil {
		parent, signer = ca.Leaf, ca.PrivateKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, leaf
}

// tlsServer serves WebSockets (the audio.drachtio.org subprotocol offered
// back) over TLS with cert, and tells how many connections got through.
func tlsServer(t *testing.T, cert tls.Certificate) (host string, upgraded <-chan struct{}) {
	t.Helper()
	up := websocket.Upgrader{Subprotocols: []string{Subprotocol}, CheckOrigin: func(*http.Request) bool { return true }}
	ch := make(chan struct{}, 10)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer conn.Close()
		ch <- struct{}{}
		for {
			if _, _, err := conn.ReadMessage(); err != nil {
				return
			}
		}
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "https://"), ch
}

func writePEM(t *testing.T, c *x509.Certificate) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}), 0o600))
	return path
}

// mod_audio_fork over wss://: a self-signed certificate is refused (with lws'
// one text for every TLS failure) unless MOD_AUDIO_FORK_ALLOW_SELFSIGNED; a
// certificate from a CA the switch does not trust is refused even then; the
// host is checked against the IP SANs unless ..._SKIP_SERVER_CERT_HOSTNAME_CHECK.
func TestAudioForkTLSVariables(t *testing.T) {
	loopback := []net.IP{net.IPv4(127, 0, 0, 1)}
	self, _ := serverCert(t, nil, loopback)
	caCert, caLeaf := serverCert(t, nil, nil)
	fromCA, _ := serverCert(t, &caCert, loopback)
	wrongName, _ := serverCert(t, &caCert, nil, "wrong.example")
	trustsCA := &tls.Config{RootCAs: x509.NewCertPool()}
	trustsCA.RootCAs.AddCert(caLeaf)
	for _, tc := range []struct {
		name      string
		cert      tls.Certificate
		store     *tls.Config
		vars      map[string]string
		connected bool
	}{
		{"self-signed", self, nil, nil, false},
		{"self-signed allowed", self, nil, map[string]string{VarForkAllowSelfSigned: "true"}, true},
		{"self-signed, hostname check skipped only", self, nil, map[string]string{VarForkSkipHostname: "true"}, false},
		{"unknown CA, self-signed allowed", fromCA, nil, map[string]string{VarForkAllowSelfSigned: "true"}, false},
		{"CA in the store", fromCA, trustsCA, nil, true},
		{"CA in the store, wrong name", wrongName, trustsCA, nil, false},
		{"CA in the store, wrong name, check skipped", wrongName, trustsCA, map[string]string{VarForkSkipHostname: "true"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sw := newStreamSwitch(t)
			sw.TLS = tc.store
			events := forkEvents(t, sw)
			host, upgraded := tlsServer(t, tc.cert)
			call := sw.Answer(CallOptions{Vars: tc.vars})
			assert.Equal(t, "+OK Success\n", sw.api("uuid_audio_fork", call.UUID+" start wss://"+host+"/fork/x mono 8k", nil))
			if tc.connected {
				assert.Equal(t, "mod_audio_fork::connect ", next(t, events))
				<-upgraded
				return
			}
			assert.Equal(t, `mod_audio_fork::connect_failed {"reason":"connect SSL err 1: error:00000001:lib(0)::reason(1)"}`, next(t, events))
		})
	}
}

// mod_audio_stream over wss://: STREAM_TLS_CA_FILE names what it trusts
// (SYSTEM by default, NONE: nothing checked); the host must be among the DNS
// names (an IP SAN is not enough) unless STREAM_TLS_DISABLE_HOSTNAME_VALIDATION;
// a refusal is error 9 with OpenSSL's text.
func TestAudioStreamTLSVariables(t *testing.T) {
	loopback := []net.IP{net.IPv4(127, 0, 0, 1)}
	caCert, caLeaf := serverCert(t, nil, nil)
	caFile := writePEM(t, caLeaf)
	ipOnly, _ := serverCert(t, &caCert, loopback)
	dnsIP, _ := serverCert(t, &caCert, loopback, "127.0.0.1")
	self, selfLeaf := serverCert(t, nil, loopback, "127.0.0.1")
	for _, tc := range []struct {
		name      string
		cert      tls.Certificate
		vars      map[string]string
		connected bool
	}{
		{"unknown CA", dnsIP, nil, false},
		{"CA file, IP SAN only", ipOnly, map[string]string{VarStreamCAFile: caFile}, false},
		{"CA file, IP SAN only, hostname not checked", ipOnly, map[string]string{VarStreamCAFile: caFile, VarStreamDisableHostname: "true"}, true},
		{"CA file, DNS SAN 127.0.0.1", dnsIP, map[string]string{VarStreamCAFile: caFile}, true},
		{"self-signed as its own CA file", self, map[string]string{VarStreamCAFile: writePEM(t, selfLeaf)}, true},
		{"NONE", ipOnly, map[string]string{VarStreamCAFile: "NONE"}, true},
		{"a CA file that is not there", dnsIP, map[string]string{VarStreamCAFile: "/nonexistent/ca.pem"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sw := newStreamSwitch(t)
			events := streamEvents(t, sw)
			host, upgraded := tlsServer(t, tc.cert)
			call := sw.Answer(CallOptions{Vars: tc.vars})
			assert.Equal(t, streamOK, sw.api("uuid_audio_stream", call.UUID+" start wss://"+host+"/x mono 8k", nil))
			if tc.connected {
				assert.Equal(t, `mod_audio_stream::connect {"status":"connected"}`, next(t, events))
				<-upgraded
				return
			}
			assert.Equal(t, `mod_audio_stream::error {"status":"error","message":{"code":9,"error":"TLS error: error:0A000086:SSL routines::certificate verify failed"}}`, next(t, events))
		})
	}
}

// forkEvents delivers mod_audio_fork's connect and connect_failed events as
// "subclass body".
func forkEvents(t *testing.T, sw *Switch) <-chan string {
	return customEvents(t, sw, "mod_audio_fork::connect", "mod_audio_fork::connect_failed")
}

// customEvents subscribes to the CUSTOM events of subclasses as the
// recordings' driver did and delivers them as "subclass body" until the
// test ends (and closes the connection).
func customEvents(t *testing.T, sw *Switch, subclasses ...string) <-chan string {
	c, r := authed(t, sw)
	c.SetDeadline(time.Time{}) // events come when they come
	io.WriteString(c, "event plain CUSTOM "+strings.Join(subclasses, " ")+"\n\n")
	readN(t, r, len("Content-Type: command/reply\nReply-Text: +OK event listener enabled plain\n\n"))
	out := make(chan string, 100)
	go func() {
		for {
			var n int
			if _, err := fmt.Fscanf(r, "Content-Length: %d\nContent-Type: text/event-plain\n\n", &n); err != nil {
				return
			}
			buf := make([]byte, n)
			if _, err := io.ReadFull(r, buf); err != nil {
				return
			}
			head, body, _ := strings.Cut(string(buf), "\n\n")
			sub := strings.ReplaceAll(strings.TrimPrefix(strings.SplitN(head, "\n", 2)[0], "Event-Subclass: "), "%3A", ":")
			out <- sub + " " + body
		}
	}()
	return out
}

// The metadata as the modules read it from the command line and send it
// (measured on the real switch): mod_audio_fork's is the rest of the line
// after the bug name, spaces kept; both pass it through FreeSWITCH's splitter
// (paired ' removed, \" unescaped, \u kept) and send at most 8192 bytes of it.
func TestMetadataAsTheModulesSendIt(t *testing.T) {
	t.Parallel()
	first := make(chan string, 1)
	read := func(conn *websocket.Conn) {
		mt, p, err := conn.ReadMessage()
		if err == nil && mt == websocket.TextMessage {
			first <- string(p)
		} else {
			first <- "no text frame"
		}
		for {
			if _, _, err := conn.ReadMessage(); err != nil {
				return
			}
		}
	}
	forkURL := newWSServer(t, func(c *websocket.Conn, _ string) { read(c) })
	streamURL := newStreamServer(t, 0, read).url
	long := `{"x":"` + strings.Repeat("a", MaxMetadata) + `"}`
	for _, tc := range []struct {
		name, api, args string
		bug, want       string
	}{
		{"fork: spaces after the bug name", "uuid_audio_fork", "mono 8k mybug {\"a\":\"b c\",\"d\":1}", "mybug", `{"a":"b c","d":1}`},
		{"fork: quotes and escapes", "uuid_audio_fork", `mono 8k mybug {"a":'x y',"b":"q\"r","c":"\u0020"}`, "mybug", `{"a":x y,"b":"q"r","c":"\u0020"}`},
		{"fork: no bug name (t19)", "uuid_audio_fork", `mono 8k {"a": "b c"}`, `{"a":`, `"b c"}`},
		{"fork: metadata alone", "uuid_audio_fork", `mono 8k {"hello":"world"}`, "audio_fork", `{"hello":"world"}`},
		{"fork: cut at 8192 bytes", "uuid_audio_fork", "mono 8k mybug " + long, "mybug", long[:MaxMetadata]},
		{"stream: quotes and escapes", "uuid_audio_stream", `mono 8k {"a":'x y',"b":"q\"r","c":"\u0020"}`, "", `{"a":x y,"b":"q"r","c":"\u0020"}`},
		{"stream: cut at 8192 bytes", "uuid_audio_stream", "mono 8k " + long, "", long[:MaxMetadata]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sw := newStreamSwitch(t)
			call := sw.Answer(CallOptions{})
			url := forkURL
			if tc.api == "uuid_audio_stream" {
				url = streamURL
			}
			assert.Equal(t, "+OK Success\n", sw.api(tc.api, call.UUID+" start "+url+" "+tc.args, nil))
			select {
			case got := <-first:
				assert.Equal(t, tc.want, got)
			case <-time.After(5 * time.Second):
				t.Fatal("no connection")
			}
			if tc.bug != "" {
				assert.Equal(t, []string{tc.bug}, call.Bugs())
			}
		})
	}
}
