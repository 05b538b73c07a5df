#!/usr/bin/env bash
# Rebuilds only the bundled entry in .gpu/ (after ../shared/gpu/prepare.sh made the rest), minified
# so that Node, Dawn, the bundle and Fashion-MNIST fit the device tool's 64 MiB carry limit.
#   usage: bench/gpu/bundle.sh dist/bench/gpu/pipeline-entry.js
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
npx esbuild "${1:?entry}" --bundle --minify --platform=node --format=esm --target=node20 \
  --external:webgpu --external:@tensorflow/tfjs-node --external:@tensorflow/tfjs-node-gpu \
  --banner:js="import { createRequire as __cr } from 'module'; const require = __cr(import.meta.url);" \
  --outfile=.gpu/entry.mjs --log-level=error
du -sh .gpu | sed 's/^/carry size: /'
