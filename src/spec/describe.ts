// Short, plain-English renderings of values and JSON types for "expected X, found Y" messages.

const MAX_SHOWN = 40;

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A string quoted and cut short, so one long value cannot swamp a message. */
export function quote(s: string): string {
  return JSON.stringify(s.length > MAX_SHOWN ? `${s.slice(0, MAX_SHOWN)}…` : s);
}

/** A literal as a user would write it: strings bare when safe (`train`), anything else as JSON. */
export function literal(v: unknown): string {
  if (typeof v === 'string') return /^[A-Za-z0-9_.\/-]+$/.test(v) ? v : quote(v);
  return JSON.stringify(v) ?? String(v);
}

function listKeys(keys: string[]): string {
  const shown = keys.slice(0, 5).join(', ');
  return keys.length > 5 ? `${shown}, …` : shown;
}

/** `the string "ten"`, `the number 2.5`, `a list of 3 items`: what was found, with its value. */
export function describeValue(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'nothing (an empty value)';
  if (typeof v === 'string') return `the string ${quote(v)}`;
  if (typeof v === 'number') return `the number ${v}`;
  if (typeof v === 'boolean') return `the boolean ${v}`;
  if (Array.isArray(v)) return v.length === 0 ? 'an empty list' : `a list of ${v.length} item${v.length === 1 ? '' : 's'}`;
  if (isPlainObject(v)) {
    const keys = Object.keys(v);
    return keys.length === 0 ? 'an empty mapping' : `a mapping with key${keys.length === 1 ? '' : 's'} ${listKeys(keys)}`;
  }
  return typeof v;
}

/** A found value in the tersest form that is still unambiguous: `"trian"`, `0`, or describeValue's words. */
export function shortValue(v: unknown): string {
  if (typeof v === 'string') return quote(v);
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return describeValue(v);
}

const TYPE_WORDS: Record<string, string> = {
  string: 'a string',
  integer: 'an integer',
  number: 'a number',
  boolean: 'true or false',
  object: 'a mapping',
  array: 'a list',
  null: 'nothing (null)',
};

export function typeWord(type: string): string {
  return TYPE_WORDS[type] ?? type;
}

/** `a string`, `a string or a mapping`, `an integer, a string or a list`. */
export function joinOr(parts: readonly string[]): string {
  const unique = [...new Set(parts)];
  if (unique.length <= 1) return unique[0] ?? '';
  return `${unique.slice(0, -1).join(', ')} or ${unique[unique.length - 1]}`;
}

export function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}
