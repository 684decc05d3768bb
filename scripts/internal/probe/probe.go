// Package probe has what the bench and soak scripts share: free ports and
// reading a running mediafork's metrics.
package probe

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
)

// FreeAddr returns a loopback TCP address nobody listens on now.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// Metric reads one series from mediafork's /metrics at api (-1 when absent).
func Metric(api, series string) float64 {
	resp, err := http.Get("http://" + api + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if name, val, ok := strings.Cut(line, " "); ok && name == series {
			v, _ := strconv.ParseFloat(val, 64)
			return v
		}
	}
	return -1
}

// Sum adds up every series of one metric, whatever its labels (drops are
// counted per endpoint), from mediafork's /metrics at api (-1 when it cannot
// be read).
func Sum(api, name string) float64 {
	resp, err := http.Get("http://" + api + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	sum := 0.0
	for _, line := range strings.Split(string(body), "\n") {
		series, val, ok := strings.Cut(line, " ")
		if ok && (series == name || strings.HasPrefix(series, name+"{")) {
			v, _ := strconv.ParseFloat(val, 64)
			sum += v
		}
	}
	return sum
}
