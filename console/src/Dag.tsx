// A workflow's DAG, laid out by dagre (left to right) and drawn by React Flow, each node
// coloured by its status. The layout depends only on the definition, so a status change
// redraws colours without moving anything.
import { memo, useEffect, useMemo } from "react";
import dagre from "@dagrejs/dagre";
import {
  Background,
  Controls,
  Handle,
  Position,
  ReactFlow,
  useReactFlow,
  useStore,
  type Edge,
  type Node,
  type NodeProps,
} from "@xyflow/react";
import "@xyflow/react/dist/style.css";

export interface Definition {
  nodes: { id: string; type: string; config?: unknown }[];
  edges: { from: string; to: string; when?: string }[];
}

const WIDTH = 170;
const HEIGHT = 48;
const MAX_HEIGHT = 480;

type StatusNodeData = { label: string; type: string; status: string; selected: boolean };

const StatusNode = memo(function StatusNode({ data, id }: NodeProps<Node<StatusNodeData>>) {
  return (
    <div
      className={`dag-node status-${data.status}${data.selected ? " selected" : ""}`}
      data-testid="dag-node"
      data-node-id={id}
      data-status={data.status}
      title={`${id} (${data.type}): ${data.status}`}
    >
      <Handle type="target" position={Position.Left} />
      <div className="dag-node-id">{data.label}</div>
      <div className="dag-node-meta">
        {data.type}
        {data.status !== "NONE" && <> · {data.status.toLowerCase()}</>}
      </div>
      <Handle type="source" position={Position.Right} />
    </div>
  );
});

const nodeTypes = { status: StatusNode };

// Fits the graph again when its pane changes size (the node panel opens beside it).
function FitOnResize() {
  const { fitView } = useReactFlow();
  const width = useStore((s) => s.width);
  const height = useStore((s) => s.height);
  useEffect(() => {
    if (width && height) void fitView({ maxZoom: 1 });
  }, [width, height, fitView]);
  return null;
}

type Positions = Map<string, { x: number; y: number }>;

// Layouts by definition: a definition's layout never changes, and a run page shows the same
// few versions again and again (live updates, the slider).
const layouts = new Map<string, Positions>();

function cachedLayout(key: string, def: Definition): Positions {
  let positions = layouts.get(key);
  if (!positions) {
    positions = layout(def);
    if (layouts.size > 50) layouts.clear();
    layouts.set(key, positions);
  }
  return positions;
}

function layout(def: Definition): Positions {
  const g = new dagre.graphlib.Graph();
  // Network simplex ranks best; on large graphs the longest path is much faster and close.
  const ranker = def.nodes.length > 150 ? "longest-path" : "network-simplex";
  g.setGraph({ rankdir: "LR", nodesep: 18, ranksep: 60, ranker });
  g.setDefaultEdgeLabel(() => ({}));
  for (const n of def.nodes) g.setNode(n.id, { width: WIDTH, height: HEIGHT });
  for (const e of def.edges) if (g.hasNode(e.from) && g.hasNode(e.to)) g.setEdge(e.from, e.to);
  // Crossing minimisation is most of the time on a large graph; its simple first pass is
  // kept there, the search for a better order only on smaller ones.
  dagre.layout(g, { disableOptimalOrderHeuristic: def.nodes.length > 150 });
  const out = new Map<string, { x: number; y: number }>();
  for (const n of def.nodes) {
    const p = g.node(n.id);
    out.set(n.id, { x: p.x - WIDTH / 2, y: p.y - HEIGHT / 2 });
  }
  return out;
}

export function Dag({
  layoutKey,
  definition,
  statuses,
  selected,
  onSelect,
  height,
}: {
  layoutKey: string;
  definition: Definition;
  // null: a workflow's version, which has no statuses (not a run's).
  statuses: Record<string, string> | null;
  selected?: string | null;
  onSelect?: (id: string) => void;
  height?: number;
}) {
  const positions = useMemo(() => cachedLayout(layoutKey, definition), [layoutKey, definition]);
  // A small graph at full size, a large one zoomed out to fit at most `maxHeight`.
  const shownHeight = useMemo(() => {
    if (height) return height;
    const ys = [...positions.values()].map((p) => p.y);
    const span = ys.length ? Math.max(...ys) - Math.min(...ys) + HEIGHT : HEIGHT;
    return Math.min(MAX_HEIGHT, Math.max(200, span + 80));
  }, [positions, height]);
  const edges: Edge[] = useMemo(
    () =>
      definition.edges.map((e, i) => ({
        id: `${i}:${e.from}->${e.to}`,
        source: e.from,
        target: e.to,
        label: e.when,
        animated: statuses?.[e.from] === "RUNNING",
      })),
    [definition, statuses],
  );
  const nodes: Node<StatusNodeData>[] = useMemo(
    () =>
      definition.nodes.map((n) => ({
        id: n.id,
        type: "status",
        position: positions.get(n.id) ?? { x: 0, y: 0 },
        data: {
          label: n.id,
          type: n.type,
          status: statuses ? (statuses[n.id] ?? "PENDING") : "NONE",
          selected: n.id === selected,
        },
        // Known sizes: React Flow shows the nodes and fits the view at once, before measuring.
        width: WIDTH,
        height: HEIGHT,
        draggable: false,
        connectable: false,
      })),
    [definition, positions, statuses, selected],
  );
  return (
    <div className="dag" style={{ height: shownHeight }} data-testid="dag">
      <ReactFlow
        nodes={nodes}
        edges={edges}
        nodeTypes={nodeTypes}
        fitView
        fitViewOptions={{ maxZoom: 1 }}
        minZoom={0.01}
        nodesDraggable={false}
        nodesConnectable={false}
        onNodeClick={(_, n) => onSelect?.(n.id)}
        // Keyboard: Tab reaches each node, Enter selects it, which opens its panel too.
        onNodesChange={(changes) => {
          for (const c of changes) if (c.type === "select" && c.selected) onSelect?.(c.id);
        }}
        proOptions={{ hideAttribution: true }}
      >
        <Background />
        <FitOnResize />
        <Controls showInteractive={false} />
      </ReactFlow>
    </div>
  );
}
