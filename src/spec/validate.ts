// Schema validation with messages written for the person who wrote the YAML. ajv decides whether
// the data is valid; when it is not, we walk the schema alongside the data ourselves, so that
// if/then stage kinds, oneOf shorthands and misspelled discriminators yield one precise message
// per real problem instead of ajv's flat list of every failed branch.
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { Ajv2019 } from 'ajv/dist/2019.js';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { sortDiagnostics, formatPath, type Diagnostic, type PathSegment } from './diagnostics.js';
import { describeValue, isPlainObject, joinOr, literal, plural, quote, shortValue, typeWord } from './describe.js';
import type { SpecDocument } from './document.js';
import { didYouMean, didYouMeanSuffix } from '../util/suggest.js';

type SchemaObject = Record<string, unknown>;
type SchemaNode = boolean | SchemaObject;

interface Issue {
  path: PathSegment[];
  at: 'key' | 'value';
  kind: string;
  message: string;
  /** Set when the value is of the wrong kind altogether ("a string"), so alternatives can be merged into one message. */
  expected?: string;
  /** For a missing key: its name. For an unknown key: the allowed key it probably meant. */
  key?: string;
}

interface AjvLike {
  addSchema(schema: object, key?: string): unknown;
  getSchema(keyRef: string): ValidateFunction | undefined;
  compile(schema: object): ValidateFunction;
}

/** Keywords checked by compiling them alone: they look only at the value in hand. */
const LOCAL_KEYWORDS = [
  'type', 'enum', 'const', 'minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum', 'multipleOf',
  'minLength', 'maxLength', 'pattern', 'format', 'minItems', 'maxItems', 'uniqueItems',
  'minProperties', 'maxProperties', 'required', 'dependentRequired',
] as const;

/** Keywords the walker does not model; a node using them is explained from ajv's own errors. */
const UNMODELLED = [
  'contains', 'dependentSchemas', 'dependencies', 'unevaluatedProperties', 'unevaluatedItems',
  '$dynamicRef', '$recursiveRef',
] as const;

/** ajv errors that only say "a branch failed"; the branch's own errors say what is wrong. */
const NOISE = new Set(['if', 'oneOf', 'anyOf', 'allOf', '$ref', 'then', 'else']);

const COMPARISONS: Record<string, string> = {
  minimum: '>=',
  maximum: '<=',
  exclusiveMinimum: '>',
  exclusiveMaximum: '<',
};

function escapePointer(seg: string): string {
  return seg.replace(/~/g, '~0').replace(/\//g, '~1');
}

function child(ptr: string, ...segs: (string | number)[]): string {
  return ptr + segs.map((s) => `/${escapePointer(String(s))}`).join('');
}

function samePath(a: readonly PathSegment[], b: readonly PathSegment[]): boolean {
  return a.length === b.length && a.every((s, i) => String(s) === String(b[i]));
}

function under(path: readonly PathSegment[], prefix: readonly PathSegment[]): boolean {
  return path.length >= prefix.length && prefix.every((s, i) => String(s) === String(path[i]));
}

function jsonType(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

function deepEqual(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function asObject(v: unknown): SchemaObject | undefined {
  return isPlainObject(v) ? v : undefined;
}

function listValues(values: readonly unknown[]): string {
  const shown = values.slice(0, 15).map(literal).join(', ');
  return values.length > 15 ? `${shown}, …` : shown;
}

/** The properties a node pins to one value (`{const: v}` or `{enum: [v]}`), e.g. {uses: 'train'}. */
function constProperties(node: SchemaObject | undefined): Map<string, unknown> {
  const pinned = new Map<string, unknown>();
  for (const [key, sub] of Object.entries(asObject(node?.['properties']) ?? {})) {
    const s = asObject(sub);
    if (!s) continue;
    if ('const' in s) pinned.set(key, s['const']);
    else if (Array.isArray(s['enum']) && s['enum'].length === 1) pinned.set(key, s['enum'][0]);
  }
  return pinned;
}

/** The single `properties.K.const` an `if` tests, e.g. `{properties: {uses: {const: 'train'}}}` -> [uses, train]. */
function constTest(node: SchemaObject | undefined): [string, unknown] | undefined {
  if (Object.keys(asObject(node?.['properties']) ?? {}).length !== 1) return undefined;
  const [entry] = constProperties(node);
  return entry;
}

function parseInstancePath(p: string): string[] {
  return p ? p.split('/').slice(1).map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~')) : [];
}

class Explainer {
  private readonly validators = new Map<string, ValidateFunction>();
  private readonly localValidators = new WeakMap<object, ValidateFunction | null>();
  /**
   * Where ajv's validation of the whole document found errors (JSON pointers). ajv keeps no errors
   * from passing branches (oneOf, if), and we only explain branches that failed, so a subtree with
   * no error under it is valid wherever the walk meets it: we skip it without compiling a validator
   * for its sub-schema. Compiling one per visited node would recompile every inline sub-schema once
   * per level of nesting: seconds for the real schema. Undefined while explaining a value that is
   * not at its own path (a property name); then each node is checked by compiling it.
   */
  private errorPaths: string[] | undefined;

  constructor(
    private readonly ajv: AjvLike,
    private readonly base: string,
    private readonly root: SchemaObject,
  ) {}

  validate(ptr: string, data: unknown): boolean {
    return this.validator(ptr)(data) === true;
  }

  private validator(ptr: string): ValidateFunction {
    let v = this.validators.get(ptr);
    if (!v) {
      const ref = `${this.base}#${ptr.split('/').map((s) => encodeURI(s)).join('/')}`;
      v = this.ajv.getSchema(ref);
      if (!v) throw new Error(`schema has no node at ${ptr}`);
      this.validators.set(ptr, v);
    }
    return v;
  }

  /** Follows a `$ref` inside this schema; undefined for anything we cannot resolve locally. */
  private resolveRef(ref: string): { node: SchemaNode; ptr: string } | undefined {
    let fragment: string | undefined;
    if (ref.startsWith('#')) fragment = ref.slice(1);
    else if (ref.startsWith(`${this.base}#`)) fragment = ref.slice(this.base.length + 1);
    if (fragment === undefined || (fragment !== '' && !fragment.startsWith('/'))) return undefined;
    let node: unknown = this.root;
    const segs: string[] = [];
    for (const raw of fragment.split('/').slice(1)) {
      const seg = decodeURIComponent(raw).replace(/~1/g, '/').replace(/~0/g, '~');
      segs.push(seg);
      if (Array.isArray(node)) node = node[Number(seg)];
      else if (isPlainObject(node)) node = node[seg];
      else return undefined;
    }
    if (typeof node !== 'boolean' && !isPlainObject(node)) return undefined;
    return { node, ptr: child('', ...segs) };
  }

  /** A node with `$ref`s followed, for looking at what it says (not for validating with). */
  private deref(node: SchemaNode, ptr: string): { node: SchemaNode; ptr: string } {
    let cur = { node, ptr };
    for (let hops = 0; hops < 20 && isPlainObject(cur.node) && typeof cur.node['$ref'] === 'string'; hops++) {
      const next = this.resolveRef(cur.node['$ref']);
      if (!next) break;
      cur = next;
    }
    return cur;
  }

  /** All issues in `data` (the whole document) against the root schema. */
  explainDocument(data: unknown): Issue[] {
    const v = this.validator('');
    if (v(data)) return [];
    this.errorPaths = (v.errors ?? []).map((e) => e.instancePath);
    try {
      const issues = this.explain(this.root, '', data, []);
      // Our walk should always find what ajv found; if it ever does not, ajv's own words beat silence.
      return issues.length ? issues : this.raw('', data, []);
    } finally {
      this.errorPaths = undefined;
    }
  }

  private mayFail(path: PathSegment[]): boolean {
    const p = child('', ...path);
    return (this.errorPaths ?? []).some((e) => e === p || e.startsWith(`${p}/`));
  }

  explain(node: SchemaNode, ptr: string, data: unknown, path: PathSegment[]): Issue[] {
    if (node === true) return [];
    if (node === false) return [{ path, at: 'key', kind: 'false', message: 'not allowed here' }];
    if (this.errorPaths ? !this.mayFail(path) : this.validate(ptr, data)) return [];
    // The walk is exact for the keywords it models, so it also answers [] for a valid value.
    return UNMODELLED.some((k) => k in node) ? this.raw(ptr, data, path) : this.walk(node, ptr, data, path);
  }

  private walk(node: SchemaObject, ptr: string, data: unknown, path: PathSegment[]): Issue[] {
    const local = this.local(node, data, path);
    // A value of the wrong type makes every other rule about it moot.
    const typeIssues = local.filter((i) => i.kind === 'type');
    if (typeIssues.length) return typeIssues;
    const issues = [...local];
    const discriminators: { key: string; issue: Issue }[] = [];

    if (typeof node['$ref'] === 'string') {
      const target = this.resolveRef(node['$ref']);
      if (!target) return this.raw(ptr, data, path);
      issues.push(...this.explain(target.node, target.ptr, data, path));
    }
    if (Array.isArray(node['allOf'])) this.allOf(node['allOf'], ptr, data, path, issues, discriminators);
    for (const kw of ['anyOf', 'oneOf'] as const) {
      if (Array.isArray(node[kw])) issues.push(...this.alternatives(kw, node[kw], ptr, data, path, discriminators));
    }
    if ('not' in node && this.validate(child(ptr, 'not'), data)) {
      issues.push({ path, at: 'value', kind: 'not', message: `${describeValue(data)} is not allowed here` });
    }
    if ('if' in node) issues.push(...this.conditional(node, ptr, data, path));
    if (isPlainObject(data)) this.objectKeywords(node, ptr, data, path, issues);
    if (Array.isArray(data)) this.arrayKeywords(node, ptr, data, path, issues);

    // A wrong stage kind (`uses: trian`) makes every other complaint about that stage noise.
    let result = issues;
    for (const d of discriminators) {
      const keyPath = [...path, d.key];
      const missingKey = (i: Issue): boolean => i.kind === 'required' && i.message === d.issue.message;
      result = result.filter((i) => !under(i.path, path) || samePath(i.path, keyPath) || missingKey(i));
      if (!result.some((i) => (d.issue.kind === 'required' ? missingKey(i) : samePath(i.path, keyPath)))) {
        result.push(d.issue);
      }
    }
    return result;
  }

  /** The assertion keywords of one node, checked by ajv on their own and reworded. */
  private local(node: SchemaObject, data: unknown, path: PathSegment[]): Issue[] {
    let v = this.localValidators.get(node);
    if (v === undefined) {
      const picked: SchemaObject = {};
      for (const k of LOCAL_KEYWORDS) if (k in node) picked[k] = node[k];
      v = Object.keys(picked).length ? this.ajv.compile(picked) : null;
      this.localValidators.set(node, v);
    }
    if (!v || v(data)) return [];
    return (v.errors ?? []).flatMap((e) => this.convert(e, node, data, path));
  }

  /** ajv's errors for a node we do not walk, reworded; "branch failed" noise dropped. */
  private raw(ptr: string, data: unknown, path: PathSegment[]): Issue[] {
    const v = this.validator(ptr);
    if (v(data)) return [];
    const errors = v.errors ?? [];
    const real = errors.filter((e) => !NOISE.has(e.keyword));
    return (real.length ? real : errors).flatMap((e) => {
      const at = [...path, ...parseInstancePath(e.instancePath)];
      const parent = asObject(e.parentSchema) ?? {};
      return this.convert(e, parent, e.data, at);
    });
  }

  private allOf(
    entries: unknown[],
    ptr: string,
    data: unknown,
    path: PathSegment[],
    issues: Issue[],
    discriminators: { key: string; issue: Issue }[],
  ): void {
    // Entries of the form {if: {properties: {K: {const: v}}}, then: ...}, grouped by K: together
    // they dispatch on K (stage `uses`, layer `type`), so a K matching none of them is the problem.
    const groups = new Map<string, { index: number; value: unknown }[]>();
    entries.forEach((entry, index) => {
      const { node } = this.deref(entry as SchemaNode, child(ptr, 'allOf', index));
      const test = isPlainObject(node) ? constTest(this.derefObject(node['if'])) : undefined;
      if (!test) return;
      const group = groups.get(test[0]) ?? [];
      group.push({ index, value: test[1] });
      groups.set(test[0], group);
    });
    const skip = new Set<number>();
    if (isPlainObject(data)) {
      for (const [key, group] of groups) {
        if (group.length < 2) continue;
        if (Object.hasOwn(data, key) && group.some((g) => deepEqual(g.value, data[key]))) continue;
        group.forEach((g) => skip.add(g.index));
        discriminators.push({ key, issue: this.discriminatorIssue(key, group.map((g) => g.value), data, path) });
      }
    }
    entries.forEach((entry, index) => {
      if (!skip.has(index)) issues.push(...this.explain(entry as SchemaNode, child(ptr, 'allOf', index), data, path));
    });
  }

  private derefObject(node: unknown): SchemaObject | undefined {
    if (!isPlainObject(node)) return undefined;
    const { node: target } = this.deref(node, '');
    return asObject(target);
  }

  private discriminatorIssue(key: string, values: unknown[], data: Record<string, unknown>, path: PathSegment[]): Issue {
    if (!Object.hasOwn(data, key)) {
      return { path, at: 'key', kind: 'required', message: `missing required key ${JSON.stringify(key)}`, key };
    }
    const found = data[key];
    const strings = values.filter((v): v is string => typeof v === 'string');
    const hint = typeof found === 'string' ? didYouMeanSuffix(found, strings) : '';
    return {
      path: [...path, key],
      at: 'value',
      kind: 'discriminator',
      message: `expected one of ${listValues(values)}; found ${typeof found === 'string' ? quote(found) : describeValue(found)}${hint}`,
    };
  }

  private alternatives(
    kw: 'anyOf' | 'oneOf',
    branches: unknown[],
    ptr: string,
    data: unknown,
    path: PathSegment[],
    discriminators: { key: string; issue: Issue }[],
  ): Issue[] {
    const ptrs = branches.map((_, i) => child(ptr, kw, i));
    const valid = ptrs.filter((p) => this.validate(p, data)).length;
    if (valid === 1 || (kw === 'anyOf' && valid > 1)) return [];
    if (valid > 1) {
      return [{ path, at: 'value', kind: 'oneOf', message: `ambiguous: the value fits ${valid} of the ${branches.length} allowed forms, expected exactly one` }];
    }

    // Object branches that each pin the same key to a constant: dispatch on that key.
    let candidates = branches.map((_, i) => i);
    if (isPlainObject(data)) {
      const pinned = branches.map((b, i) => constProperties(asObject(this.deref(b as SchemaNode, ptrs[i]!).node)));
      const key = [...(pinned[0]?.keys() ?? [])].find((k) => pinned.every((p) => p.has(k)));
      if (key !== undefined && branches.length > 1) {
        const matching = candidates.filter((i) => Object.hasOwn(data, key) && deepEqual(pinned[i]!.get(key), data[key]));
        if (!matching.length) {
          const issue = this.discriminatorIssue(key, pinned.map((p) => p.get(key)), data, path);
          discriminators.push({ key, issue });
          return [issue];
        }
        candidates = matching;
      }
    }

    const explained = candidates.map((i) => this.explain(branches[i] as SchemaNode, ptrs[i]!, data, path));
    const wrongKind = (issues: Issue[]): boolean =>
      issues.length > 0 && issues.every((i) => i.expected !== undefined && samePath(i.path, path));
    if (explained.every(wrongKind)) {
      const expected = joinOr(explained.flatMap((issues) => issues.map((i) => i.expected!)));
      return [{ path, at: 'value', kind: 'type', expected, message: `expected ${expected}, found ${describeValue(data)}` }];
    }
    // The branch that got furthest: right kind of value, right discriminator, deepest complaint, fewest complaints.
    const score = (issues: Issue[]): number[] => [
      wrongKind(issues) ? 1 : 0,
      issues.some((i) => (i.kind === 'const' || i.kind === 'enum') && i.path.length === path.length + 1) ? 1 : 0,
      -Math.max(...issues.map((i) => i.path.length)),
      issues.length,
    ];
    let best = 0;
    for (let i = 1; i < explained.length; i++) {
      const a = score(explained[i]!);
      const b = score(explained[best]!);
      const cmp = a.map((x, k) => x - b[k]!).find((d) => d !== 0) ?? 0;
      if (cmp < 0) best = i;
    }
    return explained[best] ?? [];
  }

  private conditional(node: SchemaObject, ptr: string, data: unknown, path: PathSegment[]): Issue[] {
    const holds = this.validate(child(ptr, 'if'), data);
    const branch = holds ? 'then' : 'else';
    if (!(branch in node)) return [];
    return this.explain(node[branch] as SchemaNode, child(ptr, branch), data, path);
  }

  private objectKeywords(node: SchemaObject, ptr: string, data: Record<string, unknown>, path: PathSegment[], issues: Issue[]): void {
    const props = asObject(node['properties']) ?? {};
    const patterns = Object.keys(asObject(node['patternProperties']) ?? {}).map((p) => [p, new RegExp(p, 'u')] as const);
    const additional = node['additionalProperties'];
    for (const [key, value] of Object.entries(data)) {
      const at = [...path, key];
      let known = false;
      if (Object.hasOwn(props, key)) {
        known = true;
        issues.push(...this.explain(props[key] as SchemaNode, child(ptr, 'properties', key), value, at));
      }
      for (const [p, re] of patterns) {
        if (!re.test(key)) continue;
        known = true;
        issues.push(...this.explain((node['patternProperties'] as SchemaObject)[p] as SchemaNode, child(ptr, 'patternProperties', p), value, at));
      }
      if (!known && additional === false) issues.push(this.unknownKey(node, key, path));
      else if (!known && additional !== undefined) issues.push(...this.explain(additional as SchemaNode, child(ptr, 'additionalProperties'), value, at));
      if ('propertyNames' in node && !this.validate(child(ptr, 'propertyNames'), key)) {
        const saved = this.errorPaths;
        this.errorPaths = undefined;
        try {
          for (const i of this.explain(node['propertyNames'] as SchemaNode, child(ptr, 'propertyNames'), key, at)) {
            const message = i.message.replace(/, found "[^"]*"$/, '');
            issues.push({ ...i, path: at, at: 'key', message: `invalid key ${JSON.stringify(key)}: ${message}` });
          }
        } finally {
          this.errorPaths = saved;
        }
      }
    }
  }

  private arrayKeywords(node: SchemaObject, ptr: string, data: unknown[], path: PathSegment[], issues: Issue[]): void {
    let tuple: unknown[] = [];
    let tupleKw = 'prefixItems';
    let rest: unknown = node['items'];
    let restKw = 'items';
    if (Array.isArray(node['prefixItems'])) {
      tuple = node['prefixItems'];
    } else if (Array.isArray(node['items'])) {
      tuple = node['items'];
      tupleKw = 'items';
      rest = node['additionalItems'];
      restKw = 'additionalItems';
    }
    data.forEach((item, i) => {
      const at = [...path, i];
      if (i < tuple.length) {
        issues.push(...this.explain(tuple[i] as SchemaNode, child(ptr, tupleKw, i), item, at));
      } else if (rest === false) {
        issues.push({ path: at, at: 'value', kind: 'items', message: `too many items: expected at most ${plural(tuple.length, 'item')}` });
      } else if (rest !== undefined) {
        issues.push(...this.explain(rest as SchemaNode, child(ptr, restKw), item, at));
      }
    });
  }

  private unknownKey(node: SchemaObject, key: string, path: PathSegment[], allowedKeys?: string[]): Issue {
    const props = asObject(node['properties']) ?? {};
    const allowed = allowedKeys ?? Object.keys(props).filter((k) => props[k] !== false);
    const guess = didYouMean(key, allowed);
    let hint = guess === undefined ? '' : `; did you mean ${JSON.stringify(guess)}?`;
    if (!hint) hint = allowed.length ? `; allowed keys here: ${allowed.join(', ')}` : '; no keys are allowed here';
    return {
      path: [...path, key],
      at: 'key',
      kind: 'additionalProperties',
      message: `unknown key ${JSON.stringify(key)}${hint}`,
      ...(guess === undefined ? {} : { key: guess }),
    };
  }

  /** Every property name a node (with its allOf/anyOf/oneOf/then/else/$ref parts) declares, for unevaluatedProperties. */
  private declaredKeys(node: unknown, seen = new Set<unknown>()): string[] {
    if (!isPlainObject(node) || seen.has(node)) return [];
    seen.add(node);
    const keys = Object.keys(asObject(node['properties']) ?? {});
    if (typeof node['$ref'] === 'string') keys.push(...this.declaredKeys(this.resolveRef(node['$ref'])?.node, seen));
    for (const kw of ['allOf', 'anyOf', 'oneOf']) {
      const list = node[kw];
      if (Array.isArray(list)) for (const sub of list) keys.push(...this.declaredKeys(sub, seen));
    }
    keys.push(...this.declaredKeys(node['then'], seen), ...this.declaredKeys(node['else'], seen));
    return [...new Set(keys)];
  }

  /** One ajv error, about `data` at `path` under schema `node`, in plain words. */
  private convert(e: ErrorObject, node: SchemaObject, data: unknown, path: PathSegment[]): Issue[] {
    const params = e.params as Record<string, unknown>;
    const custom = typeof node['errorMessage'] === 'string' ? node['errorMessage'] : undefined;
    const issue = (message: string, kind = e.keyword, extra: Partial<Issue> = {}): Issue[] => [
      { path, at: 'value', kind, message, ...extra },
    ];
    const expectedFound = (expected: string, found: string): string => `expected ${custom ?? expected}, found ${found}`;

    switch (e.keyword) {
      case 'type': {
        const types = Array.isArray(node['type']) ? (node['type'] as string[]) : [String(params['type'] ?? node['type'])];
        const expected = custom ?? joinOr(types.flatMap((t) => t.split(',')).map(typeWord));
        return issue(`expected ${expected}, found ${describeValue(data)}`, 'type', { expected });
      }
      case 'enum':
      case 'const': {
        const values = e.keyword === 'enum' ? (Array.isArray(node['enum']) ? node['enum'] : []) : [node['const']];
        const strings = values.filter((v): v is string => typeof v === 'string');
        const hint = typeof data === 'string' ? didYouMeanSuffix(data, strings) : '';
        const found = typeof data === 'string' ? quote(data) : describeValue(data);
        const expected = custom ?? (values.length === 1 ? literal(values[0]) : `one of ${listValues(values)}`);
        const wrongKind = !values.some((v) => jsonType(v) === jsonType(data) || (jsonType(v) === 'number' && typeof data === 'number'));
        const extra = wrongKind ? { expected: custom ?? values.map((v) => JSON.stringify(v)).join(', ') } : {};
        return issue(`expected ${expected}; found ${found}${hint}`, e.keyword, extra);
      }
      case 'minimum':
      case 'maximum':
      case 'exclusiveMinimum':
      case 'exclusiveMaximum': {
        const numberWord = node['type'] === 'integer' ? 'an integer' : 'a number';
        return issue(expectedFound(`${numberWord} ${COMPARISONS[e.keyword]} ${String(params['limit'])}`, shortValue(data)));
      }
      case 'multipleOf':
        return issue(expectedFound(`a multiple of ${String(params['multipleOf'])}`, shortValue(data)));
      case 'minLength': {
        const limit = Number(params['limit']);
        return issue(expectedFound(limit === 1 ? 'a non-empty string' : `a string of at least ${plural(limit, 'character')}`, shortValue(data)));
      }
      case 'maxLength': {
        const len = typeof data === 'string' ? data.length : 0;
        return issue(expectedFound(`a string of at most ${plural(Number(params['limit']), 'character')}`, `one of ${len}`));
      }
      case 'pattern':
        return issue(expectedFound(`a string matching the pattern ${String(params['pattern'])}`, shortValue(data)));
      case 'format':
        return issue(expectedFound(`a string in ${String(params['format'])} format`, shortValue(data)));
      case 'minItems': {
        const limit = Number(params['limit']);
        return issue(expectedFound(limit === 1 ? 'a non-empty list' : `a list of at least ${plural(limit, 'item')}`, describeValue(data)));
      }
      case 'maxItems':
        return issue(expectedFound(`a list of at most ${plural(Number(params['limit']), 'item')}`, describeValue(data)));
      case 'uniqueItems': {
        const i = Number(params['i']);
        const j = Number(params['j']);
        const item = Array.isArray(data) ? data[i] : undefined;
        return [{ path: [...path, i], at: 'value', kind: 'uniqueItems', message: `duplicate item ${shortValue(item)}: the same as item ${j}; items must be unique` }];
      }
      case 'minProperties':
      case 'maxProperties': {
        const keys = isPlainObject(data) ? Object.keys(data) : [];
        const found = keys.length === 0 ? 'none' : `${keys.length} (${keys.join(', ')})`;
        if (node['minProperties'] === 1 && node['maxProperties'] === 1) return issue(expectedFound('exactly one key', found));
        const limit = Number(params['limit']);
        const bound = e.keyword === 'minProperties' ? 'at least' : 'at most';
        return issue(expectedFound(`${bound} ${plural(limit, 'key')}`, found));
      }
      case 'required':
        const missing = String(params['missingProperty']);
        return issue(`missing required key ${JSON.stringify(missing)}`, 'required', { at: 'key', key: missing });
      case 'dependentRequired':
      case 'dependencies':
        return issue(
          `key ${JSON.stringify(String(params['property']))} also needs key ${JSON.stringify(String(params['missingProperty']))}`,
          e.keyword,
          { at: 'key' },
        );
      case 'additionalProperties': {
        const key = String(params['additionalProperty']);
        return [this.unknownKey(node, key, path)];
      }
      case 'unevaluatedProperties': {
        const key = String(params['unevaluatedProperty']);
        return [this.unknownKey(node, key, path, this.declaredKeys(node))];
      }
      case 'false schema':
        return issue('not allowed here', 'false', { at: 'key' });
      default:
        return issue(e.message ?? `fails the schema's "${e.keyword}" rule`);
    }
  }
}

/** `unit: 10` where `units` is required is one slip, not two: the did-you-mean already says it. */
function dropMisspelledRequired(issues: Issue[]): Issue[] {
  const meant = new Set(
    issues
      .filter((i) => i.kind === 'additionalProperties' && i.key !== undefined)
      .map((i) => `${formatPath(i.path.slice(0, -1))}\0${i.key}`),
  );
  return issues.filter((i) => !(i.kind === 'required' && meant.has(`${formatPath(i.path)}\0${i.key}`)));
}

const explainers = new WeakMap<object, Explainer>();
let schemaCount = 0;

function explainerFor(schema: object): Explainer {
  let explainer = explainers.get(schema);
  if (explainer) return explainer;
  const root = schema as SchemaObject;
  const draft = typeof root['$schema'] === 'string' ? root['$schema'] : '';
  // inlineRefs off: we compile many sub-schemas, and shared $defs then compile once, not into each.
  const options = { allErrors: true, strict: false, verbose: true, logger: false as const, inlineRefs: false };
  const ajv: AjvLike = draft.includes('2020-12')
    ? new Ajv2020(options)
    : draft.includes('2019-09')
      ? new Ajv2019(options)
      : new Ajv(options);
  const id = typeof root['$id'] === 'string' ? root['$id'].replace(/#$/, '') : undefined;
  const base = id ?? `tfjs-pipeline-spec-${++schemaCount}`;
  ajv.addSchema(schema, id ? undefined : base);
  explainer = new Explainer(ajv, base, root);
  explainers.set(schema, explainer);
  return explainer;
}

/**
 * Every problem in `doc.data` against `schema`, one diagnostic each, positioned in the file (or at
 * the `--set` that put the value there), sorted by line. Empty when the data is valid.
 */
export function validateAgainstSchema(doc: SpecDocument, schema: object): Diagnostic[] {
  const issues = dropMisspelledRequired(explainerFor(schema).explainDocument(doc.data));
  const diagnostics = issues.map((i): Diagnostic => {
    const pos = doc.positionOf(i.path, i.at);
    const empty = i.path.length === 0 && i.kind === 'type' && (doc.data === null || doc.data === undefined);
    const message = empty ? `the file is empty; expected ${i.expected ?? 'a mapping'}` : i.message;
    return { file: pos.file, line: pos.line, col: pos.col, path: formatPath(i.path), message };
  });
  return sortDiagnostics(diagnostics, doc.file, doc.overrides.map((expr) => `--set ${expr}`));
}
