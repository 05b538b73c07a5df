#!/usr/bin/env node
// The `pipeline` command: a thin shim over the compiled CLI (npm ci builds dist/ via `prepare`).
import { main } from '../dist/src/cli/main.js';

await main(process.argv.slice(2));
