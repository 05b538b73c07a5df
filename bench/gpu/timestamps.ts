import { selectBackend, type BackendSelection } from '../../src/backend/select.js';

/**
 * The webgpu backend with timestamp queries on, so tf.profile reports each kernel's GPU time.
 * They are an "unsafe" API in Dawn and must be enabled before the backend creates its device.
 */
export async function selectWebgpuWithTimestamps(): Promise<BackendSelection> {
  const webgpu = (await import('webgpu')) as unknown as { create(flags: string[]): unknown; globals: object };
  Object.assign(globalThis, webgpu.globals);
  Object.defineProperty(globalThis, 'navigator', {
    value: { gpu: webgpu.create(['enable-dawn-features=allow_unsafe_apis']) },
    configurable: true,
  });
  const selection = await selectBackend('webgpu');
  console.log(`backend ${selection.reason} ${selection.details.adapter ?? ''}`);
  return selection;
}
