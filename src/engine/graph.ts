import { didYouMeanSuffix } from '../util/suggest.js';

// The stage graph, built from the inputs each stage declares (not from file order), as a pure step
// that returns problems instead of throwing, so the spec loader can give each one a file position.

export interface StageNode {
  name: string;
  /** Upstream stages this one reads. */
  deps: string[];
  data: string[];
}

export interface GraphProblem {
  stage: string;
  /** The stage name or data set name at fault, to find its key in the file. */
  reference?: string;
  message: string;
}

export interface StageGraph {
  /** Stages in an order where every stage comes after its inputs (ties keep file order). */
  order: string[];
  nodes: Map<string, StageNode>;
}

export function buildStageGraph(nodes: StageNode[], dataNames: string[]): { graph?: StageGraph; problems: GraphProblem[] } {
  const byName = new Map(nodes.map((n) => [n.name, n]));
  const problems: GraphProblem[] = [];
  for (const node of nodes) {
    for (const dep of node.deps) {
      if (dep === node.name) problems.push({ stage: node.name, reference: dep, message: `stage "${node.name}" reads its own output` });
      else if (!byName.has(dep)) {
        problems.push({
          stage: node.name,
          reference: dep,
          message: `stage "${node.name}" reads stage "${dep}", which is not defined${suggest(dep, [...byName.keys()])}`,
        });
      }
    }
    for (const data of node.data) {
      if (!dataNames.includes(data)) {
        problems.push({
          stage: node.name,
          reference: data,
          message:
            `stage "${node.name}" reads data set "${data}", which is not defined under "data"` +
            suggest(data, dataNames, 'known data sets'),
        });
      }
    }
  }
  if (problems.length) return { problems };
  const cycle = findCycle(nodes, byName);
  if (cycle) {
    return {
      problems: [{ stage: cycle[0], reference: cycle[1], message: `stages form a cycle: ${cycle.join(' -> ')}` }],
    };
  }
  return { graph: { order: topologicalOrder(nodes), nodes: byName }, problems: [] };
}

function findCycle(nodes: StageNode[], byName: Map<string, StageNode>): string[] | undefined {
  const state = new Map<string, 'visiting' | 'done'>();
  const stack: string[] = [];
  const visit = (name: string): string[] | undefined => {
    if (state.get(name) === 'done') return undefined;
    if (state.get(name) === 'visiting') return [...stack.slice(stack.indexOf(name)), name];
    state.set(name, 'visiting');
    stack.push(name);
    for (const dep of byName.get(name)!.deps) {
      const cycle = visit(dep);
      if (cycle) return cycle;
    }
    stack.pop();
    state.set(name, 'done');
    return undefined;
  };
  for (const node of nodes) {
    const cycle = visit(node.name);
    if (cycle) return cycle;
  }
  return undefined;
}

function topologicalOrder(nodes: StageNode[]): string[] {
  const done = new Set<string>();
  const order: string[] = [];
  while (order.length < nodes.length) {
    const ready = nodes.find((n) => !done.has(n.name) && n.deps.every((d) => done.has(d)));
    if (!ready) throw new Error('internal: cycle not caught');
    done.add(ready.name);
    order.push(ready.name);
  }
  return order;
}

function suggest(word: string, candidates: string[], label = 'known'): string {
  const guess = didYouMeanSuffix(word, candidates);
  return guess || (candidates.length ? ` (${label}: ${candidates.join(', ')})` : '');
}
