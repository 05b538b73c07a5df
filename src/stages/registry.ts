import { InputError } from '../errors.js';
import type { StageKind } from './types.js';

const kinds = new Map<string, StageKind>();

export function registerStageKind<O extends Record<string, unknown>>(kind: StageKind<O>): void {
  if (kinds.has(kind.kind)) throw new Error(`stage kind "${kind.kind}" is registered twice`);
  kinds.set(kind.kind, kind as unknown as StageKind);
}

export function getStageKind(name: string): StageKind {
  const kind = kinds.get(name);
  if (!kind) {
    throw new InputError(`unknown stage kind "${name}"; known kinds: ${[...kinds.keys()].join(', ')}`);
  }
  return kind;
}

export function listStageKinds(): StageKind[] {
  return [...kinds.values()];
}
