import { LapinError } from '../errors.js';

/** The source could not be read: a usage or I/O problem, not a verdict on the image (exit 2). */
export class SourceError extends LapinError {
  constructor(message: string, hint?: string) {
    super(message, { exitCode: 2, ...(hint === undefined ? {} : { hint }) });
    this.name = 'SourceError';
  }
}
