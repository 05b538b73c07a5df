// Every error a user can cause is one of these: a code, an exit status and a message that names
// the file, the place, what was expected and what was found. The CLI prints the message (the stack
// only with --verbose) and exits with `exitCode`; the library never calls process.exit.

/** Exit statuses of the CLI: 0 ok, 1 a stage failed, 2 bad input or usage. */
export const EXIT_OK = 0;
export const EXIT_STAGE_FAILED = 1;
export const EXIT_BAD_INPUT = 2;

export class PipelineError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly exitCode: number = EXIT_BAD_INPUT,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'PipelineError';
  }
}

/** Bad input in a user's file (pipeline file, CSV, IDX, model.json): exit 2. */
export class InputError extends PipelineError {
  constructor(message: string, options?: { cause?: unknown; code?: string }) {
    super(options?.code ?? 'E_INPUT', message, EXIT_BAD_INPUT, options);
    this.name = 'InputError';
  }
}

/** A stored artifact whose bytes no longer match its manifest. */
export class IntegrityError extends PipelineError {
  constructor(message: string) {
    super('E_INTEGRITY', message, EXIT_STAGE_FAILED);
    this.name = 'IntegrityError';
  }
}

/** A stage that ran and failed (its own error is the cause). */
export class StageError extends PipelineError {
  constructor(readonly stage: string, message: string, options?: { cause?: unknown }) {
    super('E_STAGE', message, EXIT_STAGE_FAILED, options);
    this.name = 'StageError';
  }
}

/**
 * Training produced a loss that is not a finite number. Thrown by the training loop, which does not
 * know the stage's name: the engine adds it (and drops the stage's checkpoints, which would only
 * diverge again).
 */
export class DivergenceError extends PipelineError {
  constructor(message: string) {
    super('E_DIVERGED', message, EXIT_STAGE_FAILED);
    this.name = 'DivergenceError';
  }
}

/**
 * The artifact store cannot be written: its disk is full (exit 1, nothing the pipeline file can
 * fix) or the folder is unwritable, read-only or not a folder (exit 2, fix --store).
 */
export class StorageError extends PipelineError {
  constructor(
    message: string,
    readonly errno: string,
    options?: { cause?: unknown },
  ) {
    super('E_STORAGE', message, errno === 'ENOSPC' || errno === 'EDQUOT' ? EXIT_STAGE_FAILED : EXIT_BAD_INPUT, options);
    this.name = 'StorageError';
  }
}
