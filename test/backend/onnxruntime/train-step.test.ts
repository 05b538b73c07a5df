import { onnxruntimeKernelOptions } from '../../../src/backend/onnxruntime/kernels.js';
import { registerOnnxruntimeKernels } from '../../../src/backend/onnxruntime/register.js';
import { sessionCount } from '../../../src/backend/onnxruntime/sessions.js';

// The wasm backend's seed003 training-step comparison with cpu (gradients of every weight, then
// three Adam steps), rerun with onnxruntime's kernels in front: every convolution and matrix
// product of the step goes through onnxruntime (thresholds at 0), the rest stays on wasm.

registerOnnxruntimeKernels();
onnxruntimeKernelOptions.minMacs = 0;
onnxruntimeKernelOptions.minForwardChannels = 0;
process.on('exit', (code) => {
  if (code === 0 && sessionCount() < 5) {
    process.stderr.write(`only ${sessionCount()} onnxruntime sessions ran: the step did not go through onnxruntime\n`);
    process.exitCode = 1;
  }
});
await import('../wasm/train-step.test.js');
