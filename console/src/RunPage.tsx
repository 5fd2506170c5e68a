// One run: its DAG coloured by status and updated live (the `runUpdated` subscription, with
// polling when the socket cannot be opened), the selected node, approvals, patches and
// versions, the timeline of events, and a slider over the events that redraws the DAG as
// it was after each one (folded from the events' own `nodeStatus`), with "fork from here".
import { useCallback, useEffect, useMemo, useRef, useState, type FormEvent } from "react";
import { gql, rest, subscribe } from "./api";
import { ErrorBox, Json, Status, message, parseJson, when } from "./common";
import { Dag, type Definition } from "./Dag";
import { diffDefinitions } from "./diff";
import { Link, navigate } from "./router";

interface NodeExec {
  id: string;
  type: string;
  status: string;
  attempts: number;
  startedAt: string | null;
  finishedAt: string | null;
  outputRef: string | null;
  error: string | null;
  waitingReason: string | null;
}

interface Approval {
  nodeId: string;
  attempt: number;
  status: string;
  kind: string;
  prompt: string;
  reason: string | null;
  decision: string | null;
  comment: string | null;
  decidedBy: string | null;
  refusals: { decision: string; reason: string; at: string }[];
}

interface Patch {
  id: string;
  status: string;
  reason: string;
  ops: unknown;
  fromVersion: string | null;
  toVersion: string | null;
  rejectedReasons: string[];
  addedNodes: string[];
  removedNodes: string[];
  changedNodes: string[];
  submittedAt: string | null;
}

interface Version {
  seq: number;
  version: string;
  definition: Definition;
  patchId: string | null;
  createdAt: string;
}

interface Run {
  id: string;
  status: string;
  workflowId: string;
  workflowName: string;
  version: string;
  input: unknown;
  output: unknown;
  error: string | null;
  createdAt: string;
  updatedAt: string;
  nodes: NodeExec[];
  approvals: Approval[];
  patches: Patch[];
  versions: Version[];
  forkedFrom: { runId: string; seq: number; position: string } | null;
  forks: { id: string; status: string; createdAt: string }[];
}

interface RunEvent {
  seq: number;
  position: string;
  type: string;
  occurredAt: string;
  nodeId: string | null;
  nodeStatus: string | null;
  runStatus: string | null;
}

const RUN_FIELDS = `id status workflowId workflowName version input output error createdAt updatedAt
  nodes { id type status attempts startedAt finishedAt outputRef error waitingReason }
  approvals { nodeId attempt status kind prompt reason decision comment decidedBy
              refusals { decision reason at } }
  patches { id status reason ops fromVersion toVersion rejectedReasons addedNodes removedNodes
            changedNodes submittedAt }
  versions { seq version definition patchId createdAt }
  forkedFrom { runId seq position }
  forks { id status createdAt }`;

const RUN_QUERY = `query Run($id: ID!) { run(id: $id) { ${RUN_FIELDS} } }`;
const RUN_SUBSCRIPTION = `subscription Live($id: ID!) { runUpdated(id: $id) { ${RUN_FIELDS} } }`;
const EVENTS_QUERY = `query Events($id: ID!, $after: String) { run(id: $id) {
  events(first: 500, after: $after) {
    edges { cursor node { seq position type occurredAt nodeId nodeStatus runStatus } }
    pageInfo { hasNextPage endCursor } } } }`;
const TIMELINE_ROWS = 200;
const TERMINAL = new Set(["COMPLETED", "FAILED", "CANCELLED"]);

function useRun(id: string) {
  const [run, setRun] = useState<Run | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [live, setLive] = useState<"live" | "polling" | "ended">("live");
  const load = useCallback(async () => {
    try {
      const d = await gql<{ run: Run | null }>(RUN_QUERY, { id });
      if (!d.run) setError(`run ${id} not found (or not yet in the read model)`);
      else {
        setRun(d.run);
        setError(null);
      }
      return d.run;
    } catch (e) {
      setError(message(e));
      return null;
    }
  }, [id]);
  useEffect(() => {
    let stop = () => {};
    let poll: ReturnType<typeof setInterval> | null = null;
    let cancelled = false;
    setLive("live");
    stop = subscribe<{ runUpdated: Run }>(
      RUN_SUBSCRIPTION,
      { id },
      (d) => {
        setRun(d.runUpdated);
        setError(null);
      },
      (why) => {
        if (cancelled) return;
        if (why === null) {
          setLive("ended"); // the run finished: nothing more will change
          void load();
          return;
        }
        // The socket failed: poll instead, so the page still follows the run.
        setLive("polling");
        poll = setInterval(async () => {
          const r = await load();
          if (r && TERMINAL.has(r.status) && poll) clearInterval(poll);
        }, 1000);
      },
    );
    return () => {
      cancelled = true;
      stop();
      if (poll) clearInterval(poll);
    };
  }, [id, load]);
  return { run, error, live, reload: load };
}

function useEvents(id: string, run: Run | null) {
  const [events, setEvents] = useState<RunEvent[]>([]);
  const cursor = useRef<string | null>(null);
  const busy = useRef(false);
  const again = useRef(false);
  useEffect(() => {
    setEvents([]);
    cursor.current = null;
  }, [id]);
  const fetchMore = useCallback(async () => {
    if (busy.current) {
      again.current = true;
      return;
    }
    busy.current = true;
    try {
      for (;;) {
        const d = await gql<{
          run: {
            events: {
              edges: { cursor: string; node: RunEvent }[];
              pageInfo: { hasNextPage: boolean; endCursor: string | null };
            };
          } | null;
        }>(EVENTS_QUERY, { id, after: cursor.current });
        const page = d.run?.events;
        if (!page) break;
        if (page.edges.length) {
          cursor.current = page.edges[page.edges.length - 1].cursor;
          setEvents((old) => [...old, ...page.edges.map((e) => e.node)]);
        }
        if (!page.pageInfo.hasNextPage) break;
      }
    } finally {
      busy.current = false;
      if (again.current) {
        again.current = false;
        void fetchMore();
      }
    }
  }, [id]);
  // Each change of the run may come with new events. The first read waits a moment, so that
  // the DAG is drawn before the history (up to thousands of events) is read.
  const loaded = run !== null;
  useEffect(() => {
    if (!loaded) return;
    const t = setTimeout(() => void fetchMore().catch(() => undefined), cursor.current ? 0 : 250);
    return () => clearTimeout(t);
  }, [loaded, run?.updatedAt, run?.status, fetchMore]);
  // The run's row can be read before its last events are: once it has finished, read again
  // (for a while) until the history ends where the run did.
  const status = run?.status;
  const caughtUp = useRef(false);
  caughtUp.current = events.length > 0 && events[events.length - 1].runStatus === status;
  useEffect(() => {
    if (!status || !TERMINAL.has(status)) return;
    let tries = 0;
    const t = setInterval(() => {
      if (caughtUp.current || ++tries > 40) clearInterval(t);
      else void fetchMore().catch(() => undefined);
    }, 500);
    return () => clearInterval(t);
  }, [status, fetchMore]);
  return events;
}

const APPROVALS_QUERY = `query A($id: ID!) { run(id: $id) { approvals {
  nodeId status decision decidedBy refusals { decision reason at } } } }`;

interface Verdict {
  nodeId: string;
  status: string;
  decision: string | null;
  decidedBy: string | null;
  refusals: { decision: string; reason: string }[];
}

async function verdictOf(runId: string, nodeId: string): Promise<Verdict | undefined> {
  const d = await gql<{ run: { approvals: Verdict[] } | null }>(APPROVALS_QUERY, { id: runId });
  return d.run?.approvals.find((a) => a.nodeId === nodeId);
}

// Approve or Reject with a comment. The command API accepts a decision (202) before the
// coordinator judges it, so the verdict is then followed: taken, or refused with the reason.
export function Decide({
  runId,
  nodeId,
  onSent,
}: {
  runId: string;
  nodeId: string;
  onSent?: () => void;
}) {
  const [comment, setComment] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [sent, setSent] = useState<string | null>(null);
  const [verdict, setVerdict] = useState<string | null>(null);
  const [refusal, setRefusal] = useState<string | null>(null);
  const decide = async (decision: "approve" | "reject") => {
    setError(null);
    setVerdict(null);
    setRefusal(null);
    try {
      const was = await verdictOf(runId, nodeId);
      const before = was?.refusals.length ?? 0;
      await rest("POST", `/v1/runs/${runId}/approvals/${encodeURIComponent(nodeId)}`, {
        decision,
        comment: comment || undefined,
      });
      setSent(decision);
      onSent?.();
      const taken = decision === "approve" ? "approved" : "rejected";
      for (let i = 0; i < 120; i++) {
        const v = await verdictOf(runId, nodeId);
        if (v && v.refusals.length > before) {
          const r = v.refusals[v.refusals.length - 1];
          setRefusal(`the coordinator refused to ${decision}: ${r.reason}`);
          break;
        }
        // Taken: the approval left WAITING with this decision (another one would bring
        // a refusal of this one instead).
        if (v && was?.status === "WAITING" && v.status !== "WAITING" && v.decision === taken) {
          setVerdict(`${v.status.toLowerCase()}${v.decidedBy ? ` by ${v.decidedBy}` : ""}`);
          break;
        }
        await new Promise((ok) => setTimeout(ok, 500));
      }
    } catch (e) {
      setError(message(e));
    }
  };
  return (
    <div className="decide" data-testid={`decide-${nodeId}`}>
      <label>
        Comment{" "}
        <input
          value={comment}
          onChange={(e) => setComment(e.target.value)}
          aria-label={`comment for ${nodeId}`}
        />
      </label>
      <button type="button" className="approve" onClick={() => void decide("approve")}>
        Approve
      </button>
      <button type="button" className="reject" onClick={() => void decide("reject")}>
        Reject
      </button>
      {sent && !verdict && !refusal && (
        <span className="hint">{sent} sent; waiting for the coordinator to judge it…</span>
      )}
      {verdict && <span className="hint" data-testid="verdict">{verdict}</span>}
      <ErrorBox error={refusal ?? error} />
    </div>
  );
}

function NodePanel({ run, nodeId, definition }: { run: Run; nodeId: string; definition: Definition }) {
  const exec = run.nodes.find((n) => n.id === nodeId);
  const spec = definition.nodes.find((n) => n.id === nodeId);
  const [output, setOutput] = useState<{ value?: unknown; error?: string } | null>(null);
  useEffect(() => setOutput(null), [nodeId, exec?.status]);
  const loadOutput = async () => {
    try {
      const d = await gql<{ run: { nodes: { id: string; output: unknown }[] } }>(
        `query O($id: ID!) { run(id: $id) { nodes { id output } } }`,
        { id: run.id },
      );
      setOutput({ value: d.run.nodes.find((n) => n.id === nodeId)?.output ?? null });
    } catch (e) {
      setOutput({ error: message(e) });
    }
  };
  return (
    <section className="card node-panel" data-testid="node-panel">
      <h2>
        Node <span className="mono">{nodeId}</span> {exec && <Status status={exec.status} />}
      </h2>
      <dl>
        <dt>Type</dt>
        <dd>{spec?.type ?? exec?.type}</dd>
        <dt>Attempts</dt>
        <dd>{exec?.attempts ?? 0}</dd>
        <dt>Started</dt>
        <dd>{when(exec?.startedAt)}</dd>
        <dt>Finished</dt>
        <dd>{when(exec?.finishedAt)}</dd>
        {exec?.waitingReason && (
          <>
            <dt>Held back</dt>
            <dd>{exec.waitingReason}</dd>
          </>
        )}
        {exec?.outputRef && (
          <>
            <dt>Output ref</dt>
            <dd className="mono">{exec.outputRef}</dd>
          </>
        )}
      </dl>
      {exec?.error && <ErrorBox error={exec.error} />}
      <h3>Config</h3>
      <Json value={spec?.config ?? null} />
      <h3>Output</h3>
      {output === null ? (
        <button type="button" onClick={() => void loadOutput()}>
          Load output{exec?.outputRef ? " (from the content store)" : ""}
        </button>
      ) : output.error ? (
        <ErrorBox error={output.error} />
      ) : (
        <Json value={output.value} />
      )}
    </section>
  );
}

function PatchForm({ run }: { run: Run }) {
  const [ops, setOps] = useState("");
  const [reason, setReason] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [sent, setSent] = useState<string | null>(null);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    const parsed = parseJson(ops);
    if (parsed.error || !Array.isArray(parsed.value)) {
      setError(parsed.error ?? "the patch must be a JSON array of RFC 6902 operations");
      return;
    }
    try {
      const r = await rest<{ patch_id: string }>("POST", `/v1/runs/${run.id}/patches`, {
        patch: parsed.value,
        reason,
        base_version: run.version,
      });
      setSent(r.patch_id);
    } catch (err) {
      setError(message(err));
    }
  };
  return (
    <form onSubmit={submit} className="patch-form">
      <label htmlFor="patch-ops">JSON Patch (on the run's current definition)</label>
      <textarea
        id="patch-ops"
        rows={4}
        value={ops}
        onChange={(e) => setOps(e.target.value)}
        placeholder='[{"op": "add", "path": "/nodes/-", "value": {"id": "x", "type": "noop"}}, …]'
        spellCheck={false}
      />
      <label htmlFor="patch-reason">Reason</label>
      <input id="patch-reason" value={reason} onChange={(e) => setReason(e.target.value)} />
      <button type="submit">Submit patch</button>
      {sent && <span className="hint">patch {sent} submitted; the coordinator judges it</span>}
      <ErrorBox error={error} />
    </form>
  );
}

function ForkForm({ run, seq }: { run: Run; seq: number }) {
  const [input, setInput] = useState("");
  const [error, setError] = useState<string | null>(null);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    const parsed = parseJson(input);
    if (parsed.error) {
      setError(parsed.error);
      return;
    }
    const body: Record<string, unknown> = { at: seq };
    if (parsed.value !== undefined) body.input = parsed.value;
    try {
      const r = await rest<{ run_id: string }>("POST", `/v1/runs/${run.id}/forks`, body);
      navigate(`/runs/${r.run_id}`);
    } catch (err) {
      setError(message(err));
    }
  };
  return (
    <form onSubmit={submit} className="fork-form">
      <label htmlFor="fork-input">New input (JSON, optional: the run's own when empty)</label>
      <textarea
        id="fork-input"
        rows={2}
        value={input}
        onChange={(e) => setInput(e.target.value)}
        spellCheck={false}
      />
      <button type="submit">Fork from here (event {seq})</button>
      <ErrorBox error={error} />
    </form>
  );
}

function CancelForm({ run }: { run: Run }) {
  const [reason, setReason] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [sent, setSent] = useState(false);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    try {
      await rest("POST", `/v1/runs/${run.id}/cancel`, { reason: reason || undefined });
      setSent(true);
    } catch (err) {
      setError(message(err));
    }
  };
  return (
    <form onSubmit={submit} className="cancel-form">
      <input
        value={reason}
        onChange={(e) => setReason(e.target.value)}
        placeholder="why (optional)"
        aria-label="cancel reason"
      />{" "}
      <button type="submit" className="reject" disabled={sent}>
        Cancel run
      </button>
      {sent && <span className="hint"> cancel sent; the coordinator stops the run</span>}
      <ErrorBox error={error} />
    </form>
  );
}

export function RunPage({ id }: { id: string }) {
  const { run, error, live } = useRun(id);
  const events = useEvents(id, run);
  const [selected, setSelected] = useState<string | null>(null);
  // The slider: null follows the present; a number shows the run after that many events.
  const [at, setAt] = useState<number | null>(null);
  const [allEvents, setAllEvents] = useState(false);

  const past = useMemo(() => {
    if (at === null || !run) return null;
    const shown = events.slice(0, at);
    const statuses: Record<string, string> = {};
    let runStatus = "PENDING";
    let patches = 0;
    for (const e of shown) {
      if (e.nodeId && e.nodeStatus) statuses[e.nodeId] = e.nodeStatus;
      if (e.runStatus) runStatus = e.runStatus;
      if (e.type === "run.patch_applied") patches += 1;
    }
    const version = run.versions[Math.min(patches, run.versions.length - 1)];
    return { statuses, runStatus, version, last: shown[shown.length - 1] };
  }, [at, events, run]);

  const statuses = useMemo(() => {
    const out: Record<string, string> = {};
    for (const n of run?.nodes ?? []) out[n.id] = n.status;
    return out;
  }, [run?.nodes]);

  if (!run) return error ? <ErrorBox error={error} /> : <p className="hint">Loading run…</p>;
  const current = run.versions[run.versions.length - 1];
  const version = past?.version ?? current;
  const definition = version?.definition ?? { nodes: [], edges: [] };
  const waiting = run.approvals.filter((a) => a.status === "WAITING");
  return (
    <main className="run-page">
      <h1>
        Run <span className="mono">{run.id}</span> <Status status={run.status} />
      </h1>
      <p className="meta">
        Workflow <Link to={`/workflows/${encodeURIComponent(run.workflowId)}`}>{run.workflowName}</Link>{" "}
        · version <span className="mono">{run.version.slice(0, 12)}</span> · created{" "}
        {when(run.createdAt)} · <span data-testid="live">{live === "live" ? "live" : live === "polling" ? "polling" : "finished"}</span>
        {run.forkedFrom && (
          <>
            {" "}
            · forked from <Link to={`/runs/${run.forkedFrom.runId}`}>{run.forkedFrom.runId}</Link> at
            event {run.forkedFrom.seq}
          </>
        )}
      </p>
      <ErrorBox error={error} />
      {run.error && <ErrorBox error={`run failed: ${run.error}`} />}
      {!TERMINAL.has(run.status) && <CancelForm run={run} />}

      {waiting.map((a) => (
        <section className="card approval" key={a.nodeId} data-testid="approval">
          <h2>
            Waiting for a decision: <span className="mono">{a.nodeId}</span> ({a.kind})
          </h2>
          <p className="prompt">{a.prompt}</p>
          {a.reason && <p className="hint">{a.reason}</p>}
          {a.refusals.map((r, i) => (
            <div key={i} className="error" role="alert">
              refused {r.decision}: {r.reason}
            </div>
          ))}
          <Decide runId={run.id} nodeId={a.nodeId} />
        </section>
      ))}

      <div className="run-grid">
        <div>
          <Dag
            key={version?.version}
            layoutKey={version?.version ?? ""}
            definition={definition}
            statuses={past?.statuses ?? statuses}
            selected={selected}
            onSelect={setSelected}
          />
          <label className="node-pick">
            Node{" "}
            <select
              value={selected ?? ""}
              onChange={(e) => setSelected(e.target.value || null)}
              aria-label="select node"
            >
              <option value="">—</option>
              {definition.nodes.map((n) => (
                <option key={n.id} value={n.id}>
                  {n.id}
                </option>
              ))}
            </select>
          </label>
        </div>
        {selected && <NodePanel run={run} nodeId={selected} definition={definition} />}
      </div>

      <section className="time-travel card">
        <label htmlFor="at">
          {past ? (
            <>
              As it was after event <b data-testid="at-seq">{at}</b> of {events.length}
              {past.last && (
                <>
                  {" "}
                  (<span className="mono">{past.last.type}</span> {when(past.last.occurredAt)})
                </>
              )}{" "}
              · run <Status status={past.runStatus} />
            </>
          ) : (
            <>Now: all {events.length} events (drag back to see the run as it was)</>
          )}
        </label>
        <input
          id="at"
          type="range"
          min={1}
          max={Math.max(events.length, 1)}
          value={at ?? events.length}
          onChange={(e) => {
            const v = Number(e.target.value);
            setAt(v >= events.length ? null : v);
          }}
          aria-label="event position"
          data-testid="slider"
        />
        {past && (
          <button type="button" onClick={() => setAt(null)}>
            Back to now
          </button>
        )}
        {events.length > 0 && <ForkForm run={run} seq={at ?? events.length} />}
      </section>

      <section className="card">
        <h2>Versions and patches</h2>
        <ol className="versions" data-testid="versions">
          {run.versions.map((v, i) => (
            <li key={v.seq}>
              <span className="mono">{v.version.slice(0, 12)}</span>{" "}
              {v.seq === 0 ? "submitted" : `by patch ${v.patchId ?? ""}`} · {when(v.createdAt)}
              {i > 0 && (
                <ul className="diff">
                  {diffDefinitions(run.versions[i - 1].definition, v.definition).map((c, j) => (
                    <li key={j} className={c.kind}>
                      {c.kind === "added" ? "+ " : c.kind === "removed" ? "− " : "~ "}
                      {c.text}
                    </li>
                  ))}
                </ul>
              )}
            </li>
          ))}
        </ol>
        {run.patches.map((p) => (
          <div key={p.id} className="patch" data-testid="patch">
            <div>
              <Status status={p.status} /> {p.reason}{" "}
              {p.addedNodes.length > 0 && <span className="added">+ {p.addedNodes.join(", ")}</span>}{" "}
              {p.removedNodes.length > 0 && (
                <span className="removed">− {p.removedNodes.join(", ")}</span>
              )}{" "}
              {p.changedNodes.length > 0 && <span>~ {p.changedNodes.join(", ")}</span>}
            </div>
            {p.rejectedReasons.map((r, i) => (
              <div key={i} className="error" role="alert">
                {r}
              </div>
            ))}
            <details>
              <summary>operations</summary>
              <Json value={p.ops} />
            </details>
          </div>
        ))}
        {!TERMINAL.has(run.status) && <PatchForm run={run} />}
      </section>

      {(run.forks.length > 0 || run.forkedFrom) && (
        <section className="card">
          <h2>Forks</h2>
          <ul>
            {run.forks.map((f) => (
              <li key={f.id}>
                <Link to={`/runs/${f.id}`}>{f.id}</Link> <Status status={f.status} />
              </li>
            ))}
          </ul>
        </section>
      )}

      {run.approvals.length > 0 && (
        <section className="card">
          <h2>Approvals</h2>
          <table className="list" data-testid="approvals">
            <tbody>
              {run.approvals.map((a) => (
                <tr key={`${a.nodeId}/${a.attempt}`}>
                  <td className="mono">{a.nodeId}</td>
                  <td>
                    <Status status={a.status} />
                  </td>
                  <td>{a.prompt}</td>
                  <td>
                    {a.decision && <>{a.decision}{a.decidedBy && <> by {a.decidedBy}</>}</>}
                    {a.comment && <> · “{a.comment}”</>}
                  </td>
                  <td>
                    {a.refusals.map((r, i) => (
                      <div key={i} className="refusal">
                        refused {r.decision}: {r.reason}
                      </div>
                    ))}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </section>
      )}

      <section className="card">
        <h2>Timeline</h2>
        {events.length > TIMELINE_ROWS && !allEvents && (
          <p className="hint">
            The last {TIMELINE_ROWS} of {events.length} events.{" "}
            <button type="button" onClick={() => setAllEvents(true)}>
              Show all
            </button>
          </p>
        )}
        <table className="list timeline" data-testid="timeline">
          <tbody>
            {(allEvents ? events : events.slice(-TIMELINE_ROWS)).map((e) => (
              <tr key={e.seq} className={at !== null && e.seq > at ? "future" : ""}>
                <td>
                  <button type="button" className="link" onClick={() => setAt(e.seq >= events.length ? null : e.seq)}>
                    {e.seq}
                  </button>
                </td>
                <td>{when(e.occurredAt)}</td>
                <td className="mono">{e.type}</td>
                <td>{e.nodeId ? `${e.nodeId} → ${e.nodeStatus ?? ""}` : ""}</td>
                <td>{e.runStatus}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </section>

      <section className="card">
        <h2>Input and output</h2>
        <div data-testid="run-io">
          <Json value={{ input: run.input, output: run.output }} />
        </div>
      </section>
    </main>
  );
}
