import { version_core } from '@tensorflow/tfjs-core';
// A static JSON import (not a runtime require of a relative path) so bundles for the GPU machine
// carry the version too.
import packageJson from '../package.json' with { type: 'json' };

export const TOOL_VERSION: string = packageJson.version;
export const TFJS_VERSION: string = version_core;
