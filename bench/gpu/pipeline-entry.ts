// Entry point bundled by ../shared/gpu/prepare.sh for the GPU machine (which has no npm):
// the same CLI as bin/pipeline.js.
import { main } from '../../src/cli/main.js';

await main(process.argv.slice(2));
