#!/usr/bin/env bash
# The recorded test data is what was recorded: every file matches its hash, and,
# where the shared folder is beside the checkout, the recording it was copied from.
set -euo pipefail
cd "$(dirname "$0")/../../testdata"
sha256sum --quiet -c SHA256SUMS
# The TLV extension vectors are exactly what their independent generator prints.
(cd tlv && python3 extensions.py | cmp -s - extensions.json) || { echo "testdata/tlv/extensions.json is not extensions.py's output" >&2; exit 1; }
shared=../../shared
if [ -d "$shared/freeswitch/captures" ]; then
  while read -r _ f; do
    cmp -s "$f" "$shared/$f" || { echo "testdata/$f differs from $shared/$f" >&2; exit 1; }
  done < SHA256SUMS
  echo "testdata: $(wc -l < SHA256SUMS) files, each as recorded in $shared"
else
  echo "testdata: $(wc -l < SHA256SUMS) files match SHA256SUMS ($shared not present)"
fi
