import type { BuildEvent, BuildResult } from '../build.js';

export interface Reporter {
  event: (event: BuildEvent) => void;
  done: (result: BuildResult) => void;
}

/** Build output on stderr: steps unless quiet, warnings always, then where the image went. */
export function createReporter(options: { quiet: boolean; plain: boolean }): Reporter {
  const write = (line: string): void => {
    process.stderr.write(`${line}\n`);
  };
  return {
    event(event) {
      if (event.kind === 'warning') write(`lapin: warning: ${event.message}`);
      else if (!options.quiet) write(`=> ${event.message}`);
    },
    done(result) {
      if (options.quiet) return;
      const names = result.names.length > 0 ? result.names.join(', ') : '(no name)';
      write(`=> built ${names} for ${result.platform.os}/${result.platform.architecture}`);
      write(`=> digest ${result.digest}`);
    },
  };
}
