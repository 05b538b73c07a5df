import { rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import { dirname, join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import * as wasmBackend from '@tensorflow/tfjs-backend-wasm';
import { registerWasmTrainingKernels } from './register-all.js';

// tfjs-backend-wasm ships a multi-threaded SIMD build (XNNPACK on a pthreadpool) but never
// uses it in Node (its flag returns false there, tensorflow/tfjs#3830). Three things stand in
// the way, each worked around for the duration of initialisation only:
// 1. Emscripten starts its pthread workers from a Blob URL, which Node's Worker refuses: the
//    worker script is written to a temp .cjs file and URL.createObjectURL is pointed at it;
//    inside the worker, the main script (also a Blob) is loaded from the package's file.
// 2. The C++ side caps the pool at os.cpus().length / 2 (it assumes two hyperthreads per
//    core), i.e. one thread on a 2-core machine: os.cpus is padded while the module starts.
// 3. The multithread flag is forced on.

export interface WasmInitOptions {
  /** XNNPACK threads; 1 keeps the single-threaded SIMD build (default). */
  threads?: number;
}

export interface WasmInitResult {
  threads: number;
  simd: boolean;
}

const require = createRequire(import.meta.url);

function wasmOutDir(): string {
  return join(dirname(require.resolve('@tensorflow/tfjs-backend-wasm')), '..', 'wasm-out');
}

function writeWorkerScript(): string {
  const dir = wasmOutDir();
  const { wasmWorkerContents } = require(join(dir, 'tfjs-backend-wasm-threaded-simd.worker.js')) as {
    wasmWorkerContents: string;
  };
  const mainScript = join(dir, 'tfjs-backend-wasm-threaded-simd.js');
  // The exported text holds "\n" escapes that must stay escapes (tfjs escapes them the same
  // way before making its Blob).
  const shim =
    ';(function(){var load=global.importScripts;global.importScripts=function(f){' +
    `if(String(f).startsWith('blob:'))f=${JSON.stringify(mainScript)};return load(f);};})();\n`;
  const path = join(os.tmpdir(), `tfjs-wasm-pthread-worker-${process.pid}.cjs`);
  writeFileSync(path, wasmWorkerContents.replace(/\n/g, '\\n') + '\n' + shim);
  // Workers read it when they start, all of them during initialisation.
  process.once('exit', () => rmSync(path, { force: true }));
  return path;
}

/**
 * Registers the training kernels and makes 'wasm' the active backend, with `threads` XNNPACK
 * threads. Must run before anything else initialises the wasm backend; the thread count
 * cannot change afterwards (it is fixed when the module starts).
 */
export async function initWasmBackend(options: WasmInitOptions = {}): Promise<WasmInitResult> {
  registerWasmTrainingKernels();
  const threads = Math.max(1, Math.floor(options.threads ?? 1));
  // (tf.findBackend would start the backend as a side effect, hence the registry.)
  if (tf.engine().registry.wasm != null) {
    // Already started (by an earlier call or tf.setBackend): the module cannot be restarted.
    await setWasm();
    const actual = wasmBackend.getThreadsCount();
    if (actual < threads) {
      throw new Error(`the wasm backend already runs with ${actual} thread(s); initWasmBackend must come first`);
    }
    return { threads: actual, simd: (await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT')) === true };
  }
  if (threads > 1) {
    const workerPath = writeWorkerScript();
    const createObjectURL = URL.createObjectURL;
    const cpus = os.cpus;
    URL.createObjectURL = (obj: Blob | MediaSource): string =>
      obj instanceof Blob && obj.type === 'application/javascript' ? workerPath : createObjectURL(obj);
    os.cpus = (): os.CpuInfo[] => {
      const list = cpus();
      while (list.length < 2 * threads) list.push(list[0]);
      return list;
    };
    tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', true);
    wasmBackend.setThreadsCount(threads);
    try {
      await setWasm();
    } finally {
      URL.createObjectURL = createObjectURL;
      os.cpus = cpus;
    }
    letProcessExitWithIdleThreads();
  } else {
    await setWasm();
  }
  return { threads: wasmBackend.getThreadsCount(), simd: (await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT')) === true };
}

interface PThreadWorker {
  ref(): void;
  unref(): void;
}

interface PThreadRegistry {
  unusedWorkers: PThreadWorker[];
  runningWorkers: PThreadWorker[];
}

/**
 * Emscripten ref()s the Node worker of every running pthread, and XNNPACK's pool threads run
 * (idle) for the life of the process, so Node would never exit on its own. Their workers are
 * kept unref'd: the pool only ever works while the main thread waits on it.
 */
function letProcessExitWithIdleThreads(): void {
  const module = (tf.backend() as unknown as { wasm: { PThread?: PThreadRegistry } }).wasm;
  const registry = module.PThread;
  if (registry == null) return;
  for (const worker of [...registry.unusedWorkers, ...registry.runningWorkers]) {
    worker.ref = (): void => {};
    worker.unref();
  }
}

async function setWasm(): Promise<void> {
  if (!(await tf.setBackend('wasm'))) throw new Error('the wasm backend failed to initialise');
}
