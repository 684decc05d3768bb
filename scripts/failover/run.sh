#!/usr/bin/env bash
# The failover gap, measured: three mediafork instances on the real switch
# (MEDIAFORK_TEST_ESL, ../shared/freeswitch/dist), a real etcd, HAProxy in
# front of their ingests; a fork streams a call's tones to a TLV and an RTP
# receiver; the instance serving it is killed (-9) KILLS times (default 20),
# each time a fresh instance joins. Prints the silence the receiver saw:
# median, max, min, mean (BENCHMARKS.md "Failover").
#   MEDIAFORK_TEST_ESL=127.0.0.1:8021 bash scripts/failover/run.sh [KILLS]
set -euo pipefail
cd "$(dirname "$0")/../.."
kills=${1:-20}
: "${MEDIAFORK_TEST_ESL:?set MEDIAFORK_TEST_ESL=host:port of a FreeSWITCH from ../shared/freeswitch/dist}"
command -v haproxy >/dev/null || { echo "haproxy is needed (apt-get install haproxy)" >&2; exit 1; }
go test -count=1 -timeout 30m -run '^TestRealSwitchHAFailoverGap$' ./realswitch -v -args -failover.kills "$kills" |
  grep -E '^failover gap|killed:|^(--- |ok|FAIL)'
