import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import type { ValidateFunction } from 'ajv';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parse } from 'yaml';
import { argoWorkflowYaml, awsEnvironment, compileArgoWorkflow, type ArgoWorkflow } from '../../src/engine/argo.js';
import { loadPipeline, type Pipeline } from '../../src/spec/pipeline.js';
import { ROOT, cli, fixture, removeTempDirs, tempDir } from '../helpers.js';

// `pipeline compile --target argo`: every example pipeline and test fixture becomes a Workflow that
// Argo's published JSON schema accepts (read from ../shared/argo beside the repository, never
// copied into it), whose DAG is the stage graph, and whose GPU stages ask for nvidia.com/gpu.

test.after(removeTempDirs);

const SCHEMA = join(ROOT, '..', 'shared', 'argo', 'workflow-schema.json');
const WORKFLOW_DEF = '#/definitions/io.argoproj.workflow.v1alpha1.Workflow';

let validateWorkflow: ValidateFunction | undefined;
try {
  const { oneOf: _all, ...schema } = JSON.parse(await readFile(SCHEMA, 'utf8')) as Record<string, unknown>;
  // Kubernetes' x-kubernetes-* keywords and formats such as int32 are not ajv's: strict off, formats unchecked.
  validateWorkflow = new Ajv2020({ strict: false, validateFormats: false, allErrors: true }).compile({ ...schema, $ref: WORKFLOW_DEF });
} catch (err) {
  console.log(`skipped: Argo schema validation (${SCHEMA} cannot be read: ${(err as Error).message})`);
}

async function examplePipelines(): Promise<string[]> {
  const inDir = async (dir: string) => (await readdir(dir)).filter((f) => f.endsWith('.yaml')).map((f) => join(dir, f));
  return [...(await inDir(join(ROOT, 'pipelines'))), ...(await inDir(join(ROOT, 'test', 'fixtures')))];
}

/** Compiled, written as YAML and read back: what `argo submit` would get. */
function roundTrip(pipeline: Pipeline, options: Partial<Parameters<typeof compileArgoWorkflow>[1]> = {}): ArgoWorkflow {
  const workflow = compileArgoWorkflow(pipeline, { store: 's3://models/team', ...options });
  return parse(argoWorkflowYaml(workflow, 'pipeline compile')) as ArgoWorkflow;
}

const template = (wf: ArgoWorkflow, name: string) => wf.spec.templates.find((t) => t.name === name)!;

if (validateWorkflow) {
  test('every example pipeline and fixture compiles to a Workflow that passes Argo\'s schema', async () => {
    const files = await examplePipelines();
    assert.ok(files.length >= 9, files.join(', '));
    for (const file of files) {
      const wf = roundTrip(await loadPipeline(file), { secret: 'aws', env: { AWS_REGION: 'eu-west-1' } });
      assert.ok(validateWorkflow!(wf), `${file}: ${JSON.stringify(validateWorkflow!.errors, null, 2)}`);
    }
  });

  test('the schema check bites: unquoted Quantity and IntOrString values are refused', async () => {
    const wf = roundTrip(await loadPipeline(join(ROOT, 'pipelines', 'fashion-mnist.yaml')));
    const teacher = template(wf, 'teacher');
    (teacher.container!.resources!.limits as Record<string, unknown>)['nvidia.com/gpu'] = 1;
    (teacher.retryStrategy as Record<string, unknown>).limit = 2;
    assert.not.ok(validateWorkflow!(wf));
    const paths = validateWorkflow!.errors!.map((e) => e.instancePath);
    assert.ok(paths.some((p) => p.endsWith('/limits/nvidia.com~1gpu')), paths.join(', '));
    assert.ok(paths.some((p) => p.endsWith('/retryStrategy/limit')), paths.join(', '));
  });
}

test('the DAG is the stage graph: one task per stage, dependencies from its inputs', async () => {
  for (const file of await examplePipelines()) {
    const pipeline = await loadPipeline(file);
    const wf = roundTrip(pipeline);
    const dag = template(wf, wf.spec.entrypoint).dag!;
    assert.equal(dag.tasks.map((t) => t.name), pipeline.graph.order, file);
    for (const task of dag.tasks) {
      assert.equal(task.dependencies ?? [], pipeline.stages.get(task.name)!.deps, `${file}: ${task.name}`);
      const args = template(wf, task.template).container!.args;
      assert.equal(args.slice(0, 6), ['run', file.slice(ROOT.length), '--only', task.name, '--store', 's3://models/team']);
    }
  }
});

test('a stage with resources.gpu asks for nvidia.com/gpu and tolerates GPU nodes; the others do not', async () => {
  const wf = roundTrip(await loadPipeline(join(ROOT, 'pipelines', 'fashion-compress.yaml')));
  for (const name of ['teacher', 'student', 'pruned']) {
    assert.equal(template(wf, name).container!.resources, { limits: { 'nvidia.com/gpu': '1' } }, name);
    assert.equal(template(wf, name).tolerations, [{ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' }]);
  }
  for (const name of ['quantized', 'release-check', 'release']) {
    assert.is(template(wf, name).container!.resources, undefined, name);
    assert.is(template(wf, name).tolerations, undefined, name);
  }
});

test('a GPU backend implies a GPU for every stage, unless one says gpu: 0 (that one runs with --backend auto)', async () => {
  const sets = ['backend=webgpu', 'check.resources={gpu: 0, cpu: "500m", memory: 2Gi}', 'net.epochs=2'];
  const wf = roundTrip(await loadPipeline(fixture('iris.yaml'), sets));
  const net = template(wf, 'net').container!;
  assert.equal(net.resources, { limits: { 'nvidia.com/gpu': '1' } });
  assert.not.ok(net.args.includes('--backend'), 'the file\'s backend is kept where a GPU is asked for');
  const check = template(wf, 'check').container!;
  assert.equal(check.resources, { requests: { cpu: '500m', memory: '2Gi' } });
  assert.equal(check.args.slice(6, 8), ['--backend', 'auto']);
  // --set overrides travel with every step, so each computes the fingerprints the others do.
  assert.equal(net.args.filter((_, i) => net.args[i - 1] === '--set'), sets);
});

test('stage names become Argo names: "_" as "-", lower case, collisions numbered', async () => {
  const dir = await tempDir();
  const yaml = (await readFile(fixture('iris.yaml'), 'utf8'))
    .replace('../../data/iris.csv', join(ROOT, 'data', 'iris.csv'))
    .replace('  check:\n    uses: evaluate\n    from: net', '  a_b:\n    uses: evaluate\n    from: net\n  a-b:\n    uses: evaluate\n    from: net');
  await writeFile(join(dir, 'names.yaml'), yaml);
  const wf = roundTrip(await loadPipeline(join(dir, 'names.yaml')));
  const dag = template(wf, wf.spec.entrypoint).dag!;
  assert.equal(dag.tasks.map((t) => [t.name, t.dependencies]), [['net', undefined], ['a-b', ['net']], ['a-b-2', ['net']]]);
  assert.equal(template(wf, 'a-b').container!.args.slice(2, 4), ['--only', 'a_b']);
});

test('AWS settings are passed through; credentials, profiles and local files are withheld', () => {
  const { pass, withheld } = awsEnvironment({
    AWS_REGION: 'eu-west-1',
    AWS_ENDPOINT_URL_S3: 'http://minio:9000',
    AWS_SECRET_ACCESS_KEY: 'hush',
    AWS_ACCESS_KEY_ID: 'AKIA',
    AWS_PROFILE: 'dev',
    AWS_CA_BUNDLE: '/etc/ssl/mine.pem',
    HOME: '/root',
  });
  assert.equal(pass, { AWS_ENDPOINT_URL_S3: 'http://minio:9000', AWS_REGION: 'eu-west-1' });
  assert.equal(withheld, ['AWS_ACCESS_KEY_ID', 'AWS_CA_BUNDLE', 'AWS_PROFILE', 'AWS_SECRET_ACCESS_KEY']);
});

test('pipeline compile -o writes the workflow; no secret value lands in it; a local store is warned about', async () => {
  const dir = await tempDir();
  const out = join(dir, 'wf.yaml');
  const env = { AWS_REGION: 'eu-west-1', AWS_SECRET_ACCESS_KEY: 'not-in-the-file' };
  const result = await cli(['compile', fixture('iris.yaml'), '--target', 'argo', '-o', out, '--store', 's3://bucket-1/p', '--image', 'reg/tp:1', '--secret', 'aws'], { env });
  assert.is(result.code, 0, result.stderr);
  assert.match(result.stderr, 'AWS_SECRET_ACCESS_KEY not written into the workflow');
  const text = await readFile(out, 'utf8');
  assert.not.match(text, 'not-in-the-file');
  const wf = parse(text) as ArgoWorkflow;
  const net = template(wf, 'net').container!;
  assert.is(net.image, 'reg/tp:1');
  assert.equal(net.env, [{ name: 'AWS_REGION', value: 'eu-west-1' }]);
  assert.equal(net.envFrom, [{ secretRef: { name: 'aws', optional: true } }]);
  assert.equal(template(wf, 'net').retryStrategy!.limit, '2');
  const local = await cli(['compile', fixture('iris.yaml'), '--target', 'argo']);
  assert.is(local.code, 0, local.stderr);
  assert.match(local.stderr, '--store artifacts is a folder inside each step\'s container');
  assert.match(local.stdout, /^# Generated by `pipeline compile .*iris\.yaml --target argo`/);
  const bad = await cli(['compile', fixture('iris.yaml'), '--target', 'argo', '--set', 'net.resources.gpu=-1']);
  assert.is(bad.code, 2);
  assert.match(bad.stderr, 'stages.net.resources.gpu: expected an integer >= 0, found -1');
});

test.run();
