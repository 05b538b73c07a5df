import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

export const TOOL_VERSION: string = (require('../../package.json') as { version: string }).version;
export const TFJS_VERSION: string = (require('@tensorflow/tfjs-core/package.json') as { version: string }).version;
