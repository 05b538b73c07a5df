import { existsSync, readdirSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs';
import { InputError } from '../errors.js';
import { registerDeviceSideGradients } from './gradients.js';

// tfjs falls back to its cpu backend silently when the one asked for fails to initialise; a user
// who asked for a GPU would then wait hours without knowing. Every choice here is checked after
// tf.setBackend, and an explicit choice that cannot load is an error (exit 2) that says why.

export const BACKEND_CHOICES = ['auto', 'tensorflow-gpu', 'tensorflow', 'webgpu', 'onnxruntime', 'wasm', 'cpu'] as const;
export type BackendChoice = (typeof BACKEND_CHOICES)[number];
export type ConcreteBackend = Exclude<BackendChoice, 'auto'>;

export interface BackendSelection {
  name: ConcreteBackend;
  /** tfjs's own name of the backend now active (tensorflow-gpu registers as "tensorflow"). */
  tfBackend: string;
  /** One line for the log: what was chosen and why. */
  reason: string;
  /** What auto tried before its choice, and why each was passed over. */
  skipped: { name: ConcreteBackend; why: string }[];
  /** Extra facts for the manifest, e.g. the GPU adapter. */
  details: Record<string, string>;
}

interface Loaded {
  tfBackend: string;
  details: Record<string, string>;
}

class BackendUnavailable extends Error {}

type Loader = (forAuto: boolean) => Promise<Loaded>;

const loaders: Record<ConcreteBackend, Loader> = {
  'tensorflow-gpu': async () => {
    await importOptional('@tensorflow/tfjs-node-gpu', 'tensorflow-gpu');
    return activate('tensorflow');
  },
  tensorflow: async () => {
    await importOptional('@tensorflow/tfjs-node', 'tensorflow');
    return activate('tensorflow');
  },
  webgpu: async (forAuto) => {
    if (forAuto && !vulkanDriverPresent()) throw new BackendUnavailable('no Vulkan driver (ICD) installed');
    const details = await installNavigatorGpu();
    if (forAuto && details.fallbackAdapter === 'true') {
      throw new BackendUnavailable(`only a software adapter (${details.adapter}); pick it with --backend webgpu`);
    }
    await import('@tensorflow/tfjs-backend-webgpu');
    const loaded = await activate('webgpu');
    (await import('./webgpu/register-all.js')).registerWebgpuTrainingKernels();
    return { ...loaded, details: { ...details, ...loaded.details } };
  },
  wasm: async () => {
    // Stock tfjs-backend-wasm cannot train CNNs (no Conv2DBackpropFilter) and has slow or wrong
    // gradient kernels; ours are registered before the backend starts (src/backend/wasm/).
    const { initWasmBackend } = await import('./wasm/init.js');
    const init = await initWasmBackend({ threads: 1 });
    const loaded = await activate('wasm');
    return { ...loaded, details: { threads: String(init.threads), simd: String(init.simd) } };
  },
  onnxruntime: async () => {
    // The wasm backend (single-threaded: onnxruntime cannot read shared wasm memory) with its
    // convolutions and matrix products handed to onnxruntime's MLAS (src/backend/onnxruntime/).
    const { registerOnnxruntimeKernels, checkOnnxruntimeKernels } = await import('./onnxruntime/register.js');
    try {
      registerOnnxruntimeKernels();
    } catch (err) {
      throw new BackendUnavailable(`onnxruntime-node failed to load: ${(err as Error).message.split('\n')[0]}`);
    }
    const { initWasmBackend } = await import('./wasm/init.js');
    const init = await initWasmBackend({ threads: 1 });
    const loaded = await activate('wasm');
    const threads = checkOnnxruntimeKernels();
    return { ...loaded, details: { kernels: 'onnxruntime MLAS', threads: String(threads), simd: String(init.simd) } };
  },
  cpu: async () => activate('cpu'),
};

/**
 * Order of preference for `auto`, fastest first, as measured by bench/cpu-train and bench/gpu: on
 * a 2-core CPU, seed003 trains at ~1,000 samples/s with onnxruntime's kernels, ~500 on wasm
 * alone and ~1 on cpu. Each is taken only once it has loaded and run a kernel.
 */
const AUTO_ORDER: ConcreteBackend[] = ['tensorflow-gpu', 'tensorflow', 'webgpu', 'onnxruntime', 'wasm', 'cpu'];

export async function selectBackend(choice: BackendChoice): Promise<BackendSelection> {
  registerDeviceSideGradients();
  if (choice !== 'auto') {
    try {
      const loaded = await loaders[choice](false);
      return { name: choice, ...loaded, reason: `${choice} (as requested)`, skipped: [] };
    } catch (err) {
      throw new InputError(
        `backend "${choice}" cannot be used on this machine: ${(err as Error).message}. ` +
          `Choose another with --backend (${BACKEND_CHOICES.join(', ')}) or "backend:" in the pipeline file`,
        { code: 'E_BACKEND' },
      );
    }
  }
  const skipped: BackendSelection['skipped'] = [];
  for (const name of AUTO_ORDER) {
    try {
      const loaded = await loaders[name](true);
      const why = skipped.length ? `; passed over ${skipped.map((s) => `${s.name} (${s.why})`).join(', ')}` : '';
      return { name, ...loaded, reason: `${name} (auto${why})`, skipped };
    } catch (err) {
      skipped.push({ name, why: (err as Error).message });
    }
  }
  throw new InputError(`no tfjs backend could be loaded: ${skipped.map((s) => `${s.name}: ${s.why}`).join('; ')}`);
}

async function importOptional(pkg: string, backend: string): Promise<void> {
  try {
    await import(pkg);
  } catch (err) {
    const missing = (err as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND';
    throw new BackendUnavailable(
      missing
        ? `${pkg} is not installed (it is optional: its install downloads libtensorflow, which needs internet access)`
        : `${pkg} failed to load for the ${backend} backend: ${(err as Error).message.split('\n')[0]}`,
    );
  }
}

async function activate(tfName: string): Promise<Loaded> {
  // Production mode: no debug checks, and no "install tfjs-node" banner (we chose the backend knowingly).
  tf.env().set('PROD', true);
  let ok = false;
  try {
    ok = await tf.setBackend(tfName);
  } catch (err) {
    throw new BackendUnavailable(`tfjs could not initialise "${tfName}": ${(err as Error).message}`);
  }
  if (!ok || tf.getBackend() !== tfName) {
    throw new BackendUnavailable(`tfjs could not initialise "${tfName}" (active backend: ${tf.getBackend()})`);
  }
  return { tfBackend: tfName, details: {} };
}

function vulkanDriverPresent(): boolean {
  if (process.env.VK_DRIVER_FILES || process.env.VK_ICD_FILENAMES) return true;
  return ['/usr/share/vulkan/icd.d', '/etc/vulkan/icd.d'].some(
    (dir) => existsSync(dir) && readdirSync(dir).some((f) => f.endsWith('.json')),
  );
}

interface GpuLike {
  requestAdapter(): Promise<object | null>;
}

interface AdapterInfoLike {
  vendor?: string;
  architecture?: string;
  device?: string;
  description?: string;
  isFallbackAdapter?: boolean;
}

/** tfjs's webgpu backend looks for navigator.gpu; in Node the `webgpu` package (Dawn) provides it. */
async function installNavigatorGpu(): Promise<Record<string, string>> {
  let webgpu: { create: (flags: string[]) => GpuLike; globals: Record<string, unknown> };
  try {
    webgpu = (await import('webgpu')) as unknown as typeof webgpu;
  } catch (err) {
    throw new BackendUnavailable(`the webgpu package (Dawn) failed to load: ${(err as Error).message}`);
  }
  const g = globalThis as unknown as { navigator?: { gpu?: GpuLike } };
  if (!g.navigator?.gpu) {
    Object.assign(globalThis, webgpu.globals);
    Object.defineProperty(globalThis, 'navigator', { value: { gpu: webgpu.create([]) }, configurable: true });
  }
  const adapter = await g.navigator!.gpu!.requestAdapter();
  if (!adapter) throw new BackendUnavailable('no WebGPU adapter found (is a Vulkan driver installed?)');
  const info = ((adapter as unknown as { info?: AdapterInfoLike }).info ?? {}) as AdapterInfoLike;
  const fallback = info.isFallbackAdapter ?? (adapter as unknown as { isFallbackAdapter?: boolean }).isFallbackAdapter;
  return {
    adapter: [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' ') || 'unknown',
    fallbackAdapter: String(Boolean(fallback)),
  };
}
