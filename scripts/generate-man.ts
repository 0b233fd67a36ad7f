// Writes docs/lapin.1 from the commander definitions that --help prints
// (src/cli/completion.ts manPage). test/cli/completion.test.ts fails when
// the committed page is stale: run `npm run man` after changing an option.
import { writeFileSync } from 'node:fs';
import { manPage } from '../src/cli/completion.js';
import { program, VERSION } from '../src/cli/program.js';

writeFileSync(new URL('../docs/lapin.1', import.meta.url), manPage(program(), VERSION));
