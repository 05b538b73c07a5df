// Prometheus text exposition (format 0.0.4), written by hand: the server needs counters,
// gauges and histograms with labels and nothing else, which is less code than a dependency's
// configuration (prom-client is not installed, and its default collectors would double the page).
// Label values come only from names the server itself knows (model names found on disk, API
// names, status codes), never from raw request text, so the number of series stays bounded.

export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

type Labels = Record<string, string>;

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function escapeHelp(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

/** Prometheus prints +Inf, -Inf and NaN in Go's spelling. */
function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

function labelText(names: readonly string[], values: readonly string[], extra?: [string, string]): string {
  const parts = names.map((n, i) => `${n}="${escapeLabelValue(values[i])}"`);
  if (extra) parts.push(`${extra[0]}="${escapeLabelValue(extra[1])}"`);
  return parts.length ? `{${parts.join(',')}}` : '';
}

abstract class Metric {
  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[],
  ) {
    if (!METRIC_NAME.test(name)) throw new Error(`metric name "${name}" is not a valid Prometheus name`);
    for (const l of labelNames) {
      if (!LABEL_NAME.test(l) || l === 'le') throw new Error(`metric ${name}: label name "${l}" is not allowed`);
    }
  }

  abstract readonly type: 'counter' | 'gauge' | 'histogram';
  abstract samples(): string[];

  protected key(labels: Labels): { key: string; values: string[] } {
    const values = this.labelNames.map((n) => {
      const v = labels[n];
      if (v === undefined) throw new Error(`metric ${this.name}: label "${n}" is missing`);
      return v;
    });
    return { key: JSON.stringify(values), values };
  }

  render(): string {
    const lines = [`# HELP ${this.name} ${escapeHelp(this.help)}`, `# TYPE ${this.name} ${this.type}`, ...this.samples()];
    return lines.join('\n');
  }
}

export class Counter extends Metric {
  readonly type = 'counter';
  private readonly series = new Map<string, { values: string[]; value: number }>();

  inc(labels: Labels = {}, by = 1): void {
    if (!(by >= 0)) throw new Error(`counter ${this.name} can only go up (got ${by})`);
    const { key, values } = this.key(labels);
    const s = this.series.get(key);
    if (s) s.value += by;
    else this.series.set(key, { values, value: by });
  }

  get(labels: Labels = {}): number {
    return this.series.get(this.key(labels).key)?.value ?? 0;
  }

  samples(): string[] {
    return [...this.series.values()].map((s) => `${this.name}${labelText(this.labelNames, s.values)} ${formatValue(s.value)}`);
  }
}

/** A gauge whose series are computed when the page is rendered (loaded versions, tensors). */
export class Gauge extends Metric {
  readonly type = 'gauge';

  constructor(
    name: string,
    help: string,
    labelNames: readonly string[],
    private readonly collect: () => { labels?: Labels; value: number }[],
  ) {
    super(name, help, labelNames);
  }

  samples(): string[] {
    return this.collect().map((s) => `${this.name}${labelText(this.labelNames, this.key(s.labels ?? {}).values)} ${formatValue(s.value)}`);
  }
}

export class Histogram extends Metric {
  readonly type = 'histogram';
  private readonly series = new Map<string, { values: string[]; counts: number[]; sum: number; count: number }>();

  constructor(
    name: string,
    help: string,
    labelNames: readonly string[],
    readonly buckets: readonly number[],
  ) {
    super(name, help, labelNames);
    if (!buckets.every((b, i) => i === 0 || b > buckets[i - 1])) throw new Error(`histogram ${name}: buckets must increase`);
  }

  observe(labels: Labels, value: number): void {
    const { key, values } = this.key(labels);
    let s = this.series.get(key);
    if (!s) {
      s = { values, counts: this.buckets.map(() => 0), sum: 0, count: 0 };
      this.series.set(key, s);
    }
    for (let i = 0; i < this.buckets.length; i++) if (value <= this.buckets[i]) s.counts[i]++;
    s.sum += value;
    s.count++;
  }

  samples(): string[] {
    const lines: string[] = [];
    for (const s of this.series.values()) {
      this.buckets.forEach((b, i) => {
        lines.push(`${this.name}_bucket${labelText(this.labelNames, s.values, ['le', formatValue(b)])} ${s.counts[i]}`);
      });
      lines.push(`${this.name}_bucket${labelText(this.labelNames, s.values, ['le', '+Inf'])} ${s.count}`);
      lines.push(`${this.name}_sum${labelText(this.labelNames, s.values)} ${formatValue(s.sum)}`);
      lines.push(`${this.name}_count${labelText(this.labelNames, s.values)} ${s.count}`);
    }
    return lines;
  }
}

export class MetricsRegistry {
  private readonly metrics: Metric[] = [];

  counter(name: string, help: string, labelNames: readonly string[] = []): Counter {
    return this.add(new Counter(name, help, labelNames));
  }

  gauge(name: string, help: string, labelNames: readonly string[], collect: () => { labels?: Labels; value: number }[]): Gauge {
    return this.add(new Gauge(name, help, labelNames, collect));
  }

  histogram(name: string, help: string, labelNames: readonly string[], buckets: readonly number[]): Histogram {
    return this.add(new Histogram(name, help, labelNames, buckets));
  }

  render(): string {
    return `${this.metrics.map((m) => m.render()).join('\n')}\n`;
  }

  private add<M extends Metric>(metric: M): M {
    if (this.metrics.some((m) => m.name === metric.name)) throw new Error(`metric ${metric.name} is registered twice`);
    this.metrics.push(metric);
    return metric;
  }
}

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const SIZE_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];

/** The server's metrics; gauges read the registry's live state when /metrics is scraped. */
export class ServeMetrics {
  readonly registry = new MetricsRegistry();
  readonly requests: Counter;
  readonly errors: Counter;
  readonly latency: Histogram;
  readonly batchSize: Histogram;
  readonly batchRequests: Histogram;
  readonly inferenceSeconds: Histogram;
  readonly loads: Counter;

  constructor(sources: {
    versionStates: () => { model: string; version: number; state: string }[];
    tensors: () => number;
    inflight: () => number;
  }) {
    const r = this.registry;
    this.requests = r.counter('pipeline_serve_requests_total', 'HTTP requests answered, by API, model and status code', ['api', 'model', 'code']);
    this.errors = r.counter(
      'pipeline_serve_request_errors_total',
      'HTTP requests answered with an error (status >= 400), by API, model and status code',
      ['api', 'model', 'code'],
    );
    this.latency = r.histogram(
      'pipeline_serve_request_duration_seconds',
      'time from the request arriving to its response being sent',
      ['api', 'model'],
      LATENCY_BUCKETS,
    );
    this.batchSize = r.histogram('pipeline_serve_batch_size', 'rows per model execution (one execution serves one or more requests)', ['model', 'version'], SIZE_BUCKETS);
    this.batchRequests = r.histogram('pipeline_serve_batch_requests', 'requests merged into one model execution', ['model', 'version'], SIZE_BUCKETS);
    this.inferenceSeconds = r.histogram(
      'pipeline_serve_inference_duration_seconds',
      'time of one model execution: input tensor, predict, reading the output back',
      ['model', 'version'],
      LATENCY_BUCKETS,
    );
    this.loads = r.counter('pipeline_serve_version_loads_total', 'model version loads, by result (ok or error)', ['model', 'result']);
    r.gauge('pipeline_serve_loaded_versions', 'model versions in state AVAILABLE', ['model'], () => {
      const byModel = new Map<string, number>();
      for (const v of sources.versionStates()) byModel.set(v.model, (byModel.get(v.model) ?? 0) + (v.state === 'AVAILABLE' ? 1 : 0));
      return [...byModel].map(([model, value]) => ({ labels: { model }, value }));
    });
    r.gauge('pipeline_serve_model_version_state', '1 for the state each known model version is in', ['model', 'version', 'state'], () =>
      sources.versionStates().map((v) => ({ labels: { model: v.model, version: String(v.version), state: v.state }, value: 1 })),
    );
    r.gauge('pipeline_serve_inflight_requests', 'requests received and not yet answered', [], () => [{ value: sources.inflight() }]);
    r.gauge('pipeline_serve_tf_tensors', 'tensors tfjs holds (weights of loaded versions included); growth between scrapes is a leak', [], () => [
      { value: sources.tensors() },
    ]);
    r.gauge('process_resident_memory_bytes', 'resident set size of the server process', [], () => [{ value: process.memoryUsage().rss }]);
  }
}
