import { LapinError, type SourcePosition } from '../errors.js';

/**
 * A Containerfile instruction lapin does not apply itself (RUN, ONBUILD,
 * ADD of a URL, RUN here-documents, some COPY flags). The build hands such a
 * file to a real builder (buildah, podman or docker) when one is installed;
 * without one this error is what the user sees.
 */
export class ExecutionNeeded extends LapinError {
  /** The instruction as the user wrote it, for messages: "RUN", "ADD of a URL". */
  readonly instruction: string;

  constructor(instruction: string, message: string, options: { at: SourcePosition; hint: string }) {
    super(message, options);
    this.name = 'ExecutionNeeded';
    this.instruction = instruction;
  }
}
