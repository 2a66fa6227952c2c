#!/usr/bin/env bash
# Checks that the `cuda` and `wgpu` builds of the binaries get Burn's GPU backends with
# `fusion` and `autotune` (what a Burn user gets by default; the workspace takes burn with
# default-features = false, so the crates' features must ask for them). Reads cargo's
# resolved feature graph (`cargo tree -e features`): no compilation, a few seconds.
# Run by .ci/run; exits non-zero naming the build and the missing feature.
set -euo pipefail
cd "$(dirname "$0")/.."

status=0
for backend in cuda wgpu; do
    for pkg in detr-train detr-infer detr-model; do
        for crate in "burn-$backend" burn-cubecl; do
            line=$(cargo tree -q -e features -p "$pkg" --features "$backend" \
                -f '{p} [{f}]' -i "$crate" --depth 0 | head -1)
            features=${line##*[}
            features=",${features%]},"
            for want in fusion autotune; do
                if [[ $features != *",$want,"* ]]; then
                    echo "error: $pkg --features $backend: $crate lacks \`$want\` ($line)" >&2
                    status=1
                fi
            done
            echo "$pkg --features $backend: $line"
        done
    done
done
exit $status
