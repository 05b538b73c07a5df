#!/usr/bin/env node
// Runs each compiled test file (dist/test/**/*.test.js) in its own Node process, two at a time:
// tfjs keeps one global engine and backend per process, so isolation keeps one file's backend
// choice or leaked tensors from changing another's result. Usage: node scripts/run-tests.js [filter]
import { spawn } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { availableParallelism } from 'node:os';

const root = new URL('..', import.meta.url).pathname;
const testRoot = join(root, 'dist', 'test');
const filter = process.argv[2];

function collect(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return collect(path);
    return name.endsWith('.test.js') ? [path] : [];
  });
}

const files = collect(testRoot).filter((f) => !filter || f.includes(filter)).sort();
const parallel = Math.max(1, Math.min(Number(process.env.TEST_PARALLEL ?? availableParallelism()), 4));
const failed = [];
let next = 0;
const started = Date.now();

function runOne(file) {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const child = spawn(process.execPath, [file], { cwd: root, env: { ...process.env, FORCE_COLOR: '0' } });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('close', (code, signal) => {
      const name = relative(testRoot, file);
      const secs = ((Date.now() - t0) / 1000).toFixed(1);
      if (code === 0) {
        console.log(`ok    ${name} (${secs}s)`);
      } else {
        failed.push(name);
        console.log(`FAIL  ${name} (${secs}s, exit ${code ?? signal})\n${out}`);
      }
      resolve();
    });
  });
}

async function worker() {
  while (next < files.length) await runOne(files[next++]);
}

await Promise.all(Array.from({ length: parallel }, worker));
const total = ((Date.now() - started) / 1000).toFixed(1);
console.log(`\n${files.length - failed.length}/${files.length} test files passed in ${total}s`);
if (failed.length) {
  console.log(`failed: ${failed.join(', ')}`);
  process.exit(1);
}
if (files.length === 0) {
  console.log('no test files found');
  process.exit(1);
}
