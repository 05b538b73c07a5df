import * as tf from '@tensorflow/tfjs';

// Per-kernel time for a backend whose kernels run synchronously (cpu, wasm): every
// registered kernelFunc of the backend is wrapped with a timer. Time spent inside a kernel
// that calls other kernels through the registry (ours compose stock ones) is counted for the
// outer kernel only, so the table adds up to the time spent in kernels.
// The 'cpu' clock counts this process's CPU time, which other processes on a shared machine
// do not inflate; it only equals kernel time when the kernels run on one thread.

export type Clock = 'wall' | 'cpu';

function now(clock: Clock): number {
  if (clock === 'wall') return performance.now();
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1000;
}

export interface KernelTime {
  kernel: string;
  calls: number;
  ms: number;
}

export class KernelTimer {
  private readonly totals = new Map<string, { calls: number; ms: number }>();
  private readonly originals: tf.KernelConfig[] = [];
  private depth = 0;

  constructor(
    private readonly backendName: string,
    private readonly clock: Clock = 'wall',
    /** Also split each kernel's time by the shapes of its inputs. */
    private readonly byShape = false,
  ) {}

  install(): void {
    if (this.originals.length > 0) return;
    for (const config of tf.getKernelsForBackend(this.backendName)) {
      this.originals.push(config);
      const inner = config.kernelFunc;
      const wrapped: tf.KernelFunc = (args) => {
        if (this.depth > 0) return inner(args);
        this.depth++;
        const start = now(this.clock);
        try {
          return inner(args);
        } finally {
          const ms = now(this.clock) - start;
          this.depth--;
          const key = this.byShape ? `${config.kernelName} ${describeInputs(args.inputs)}` : config.kernelName;
          const entry = this.totals.get(key) ?? { calls: 0, ms: 0 };
          entry.calls++;
          entry.ms += ms;
          this.totals.set(key, entry);
        }
      };
      tf.unregisterKernel(config.kernelName, this.backendName);
      tf.registerKernel({ ...config, kernelFunc: wrapped });
    }
  }

  uninstall(): void {
    for (const config of this.originals) {
      tf.unregisterKernel(config.kernelName, this.backendName);
      tf.registerKernel(config);
    }
    this.originals.length = 0;
  }

  reset(): void {
    this.totals.clear();
  }

  /** Kernels by total time, longest first. */
  report(): KernelTime[] {
    return [...this.totals.entries()]
      .map(([kernel, t]) => ({ kernel, calls: t.calls, ms: t.ms }))
      .sort((a, b) => b.ms - a.ms);
  }
}

function describeInputs(inputs: tf.NamedTensorInfoMap): string {
  return Object.values(inputs)
    .map((t) => (t == null ? '-' : `[${t.shape.join(',')}]`))
    .join(' ');
}
