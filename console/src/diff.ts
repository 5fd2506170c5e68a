// What a patch changed in a run's definition, in words: nodes and edges added and removed,
// and nodes whose type or settings changed. Computed from the two versions' definitions,
// so it reads the same whoever wrote the patch (a person's ops, an agent's).
import type { Definition } from "./Dag";

export interface Change {
  kind: "added" | "removed" | "changed";
  text: string;
}

const edgeKey = (e: Definition["edges"][number]) =>
  `${e.from} → ${e.to}${e.when ? ` (when ${e.when})` : ""}`;

export function diffDefinitions(before: Definition, after: Definition): Change[] {
  const out: Change[] = [];
  const old = new Map(before.nodes.map((n) => [n.id, n]));
  const now = new Map(after.nodes.map((n) => [n.id, n]));
  for (const [id, n] of now) {
    const was = old.get(id);
    if (!was) out.push({ kind: "added", text: `node ${id} (${n.type})` });
    else if (JSON.stringify(was) !== JSON.stringify(n)) {
      const fields = Object.keys({ ...was, ...n }).filter(
        (k) =>
          JSON.stringify((was as Record<string, unknown>)[k]) !==
          JSON.stringify((n as Record<string, unknown>)[k]),
      );
      out.push({ kind: "changed", text: `node ${id}: ${fields.join(", ")} changed` });
    }
  }
  for (const id of old.keys()) {
    if (!now.has(id)) out.push({ kind: "removed", text: `node ${id}` });
  }
  const oldEdges = new Set(before.edges.map(edgeKey));
  const newEdges = new Set(after.edges.map(edgeKey));
  for (const e of newEdges) if (!oldEdges.has(e)) out.push({ kind: "added", text: `edge ${e}` });
  for (const e of oldEdges) if (!newEdges.has(e)) out.push({ kind: "removed", text: `edge ${e}` });
  return out;
}
