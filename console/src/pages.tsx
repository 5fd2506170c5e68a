import { useMemo, useState, type FormEvent } from "react";
import { gql, rest, setApiKey } from "./api";
import { ErrorBox, Json, Status, message, parseJson, usePolled, when } from "./common";
import { Dag, type Definition } from "./Dag";
import { Link, navigate } from "./router";
import { Decide } from "./RunPage";

export function SignIn({ onSignedIn }: { onSignedIn: () => void }) {
  const [key, setKey] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      // Any query checks the key: a wrong one is the API's 401 with its reason.
      await gql("query { workflows(first: 1) { edges { node { id } } } }", {}, key.trim());
      setApiKey(key.trim());
      onSignedIn();
    } catch (err) {
      setError(message(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <main className="signin">
      <h1>AOB console</h1>
      <form onSubmit={submit}>
        <label htmlFor="api-key">API key</label>
        <input
          id="api-key"
          type="password"
          autoFocus
          value={key}
          onChange={(e) => setKey(e.target.value)}
          placeholder="aob_…  (aob keys create --tenant NAME)"
          autoComplete="off"
        />
        <button type="submit" disabled={busy || !key.trim()}>
          Sign in
        </button>
        <p className="hint">The key is kept for this tab only (sessionStorage).</p>
        <ErrorBox error={error} />
      </form>
    </main>
  );
}

const STATUSES = ["", "PENDING", "RUNNING", "WAITING", "COMPLETED", "FAILED", "CANCELLED"];

interface RunRow {
  id: string;
  status: string;
  workflowId: string;
  workflowName: string;
  version: string;
  createdAt: string;
  updatedAt: string;
}

const RUN_BY_ID = `query RunById($id: ID!) {
  run(id: $id) { id status workflowId workflowName version createdAt updatedAt }
}`;

const RUNS = `query Runs($filter: RunFilter, $first: Int!) {
  runs(filter: $filter, first: $first) {
    edges { node { id status workflowId workflowName version createdAt updatedAt } }
  }
}`;

export function RunsList() {
  const [status, setStatus] = useState("");
  const [search, setSearch] = useState("");
  const { data, error } = usePolled(
    async () => {
      const filter = status ? { status } : {};
      const q = search.trim();
      type Page = { runs: { edges: { node: RunRow }[] } };
      // The newest runs, and, for a search, that workflow's runs and the run of that id, so
      // that older runs are found too.
      const [recent, ofWorkflow, byId] = await Promise.all([
        gql<Page>(RUNS, { filter, first: 200 }),
        q ? gql<Page>(RUNS, { filter: { ...filter, workflowId: q }, first: 200 }) : null,
        q
          ? gql<{ run: RunRow | null }>(RUN_BY_ID, { id: q }).catch(() => ({ run: null }))
          : null,
      ]);
      const all = new Map<string, RunRow>();
      for (const page of [recent, ofWorkflow]) {
        for (const e of page?.runs.edges ?? []) all.set(e.node.id, e.node);
      }
      if (byId?.run && (!status || byId.run.status === status)) all.set(byId.run.id, byId.run);
      return [...all.values()].sort((a, b) => b.createdAt.localeCompare(a.createdAt));
    },
    1500,
    [status, search],
  );
  const rows = useMemo(() => {
    const q = search.trim().toLowerCase();
    return (data ?? []).filter(
      (r) =>
        !q ||
        r.id.toLowerCase().includes(q) ||
        r.workflowId.toLowerCase().includes(q) ||
        r.workflowName.toLowerCase().includes(q),
    );
  }, [data, search]);
  return (
    <main>
      <h1>Runs</h1>
      <div className="toolbar">
        <label>
          Status{" "}
          <select value={status} onChange={(e) => setStatus(e.target.value)} aria-label="status filter">
            {STATUSES.map((s) => (
              <option key={s} value={s}>
                {s || "any"}
              </option>
            ))}
          </select>
        </label>
        <label>
          Search{" "}
          <input
            type="search"
            value={search}
            onChange={(e) => setSearch(e.target.value)}
            placeholder="run id or workflow"
            aria-label="search runs"
          />
        </label>
        <span className="hint">updates live (every 1.5 s)</span>
      </div>
      <ErrorBox error={error} />
      <table className="list" data-testid="runs">
        <thead>
          <tr>
            <th>Run</th>
            <th>Workflow</th>
            <th>Status</th>
            <th>Created</th>
            <th>Updated</th>
          </tr>
        </thead>
        <tbody>
          {rows.map((r) => (
            <tr key={r.id} data-run-id={r.id}>
              <td>
                <Link to={`/runs/${r.id}`}>{r.id}</Link>
              </td>
              <td>
                <Link to={`/workflows/${encodeURIComponent(r.workflowId)}`}>{r.workflowName}</Link>
              </td>
              <td>
                <Status status={r.status} />
              </td>
              <td>{when(r.createdAt)}</td>
              <td>{when(r.updatedAt)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {data && rows.length === 0 && <p className="hint">No runs match.</p>}
    </main>
  );
}

interface PendingApproval {
  runId: string;
  nodeId: string;
  kind: string;
  prompt: string;
  reason: string | null;
  requestedAt: string;
  dueAt: string | null;
}

export function Inbox() {
  // Approvals decided here stay listed, so that the coordinator's verdict (or refusal)
  // can be read after the approval has left the waiting list.
  const [kept, setKept] = useState<Record<string, PendingApproval>>({});
  const { data, error } = usePolled(
    async () => {
      const d = await gql<{ pendingApprovals: { edges: { node: PendingApproval }[] } }>(
        `query { pendingApprovals(first: 100) { edges { node {
           runId nodeId kind prompt reason requestedAt dueAt } } } }`,
      );
      return d.pendingApprovals.edges.map((e) => e.node);
    },
    2000,
    [],
  );
  return (
    <main>
      <h1>Approvals waiting</h1>
      <ErrorBox error={error} />
      {data && data.length === 0 && Object.keys(kept).length === 0 && (
        <p className="hint">Nothing waits for a decision.</p>
      )}
      {[
        ...(data ?? []),
        ...Object.values(kept).filter(
          (k) => !(data ?? []).some((a) => a.runId === k.runId && a.nodeId === k.nodeId),
        ),
      ].map((a) => (
        <section className="card" key={`${a.runId}/${a.nodeId}`} data-testid="inbox-item">
          <div>
            <Link to={`/runs/${a.runId}`}>{a.runId}</Link> · node <b>{a.nodeId}</b> · {a.kind} ·
            asked {when(a.requestedAt)}
            {a.dueAt && <> · due {when(a.dueAt)}</>}
          </div>
          <p className="prompt">{a.prompt}</p>
          {a.reason && <p className="hint">{a.reason}</p>}
          <Decide
            runId={a.runId}
            nodeId={a.nodeId}
            onSent={() => setKept((k) => ({ ...k, [`${a.runId}/${a.nodeId}`]: a }))}
          />
        </section>
      ))}
    </main>
  );
}

interface WorkflowRow {
  id: string;
  name: string;
  latestVersion: string;
  updatedAt: string;
  versions: { version: string; publishedAt: string }[];
}

export function Workflows() {
  const { data, error } = usePolled(
    async () => {
      const d = await gql<{ workflows: { edges: { node: WorkflowRow }[] } }>(
        `query { workflows(first: 100) { edges { node {
           id name latestVersion updatedAt versions(first: 50) { version publishedAt } } } } }`,
      );
      return d.workflows.edges.map((e) => e.node);
    },
    5000,
    [],
  );
  return (
    <main>
      <h1>Workflows</h1>
      <ErrorBox error={error} />
      <table className="list">
        <thead>
          <tr>
            <th>Workflow</th>
            <th>Versions</th>
            <th>Latest</th>
            <th>Updated</th>
          </tr>
        </thead>
        <tbody>
          {(data ?? []).map((w) => (
            <tr key={w.id}>
              <td>
                <Link to={`/workflows/${encodeURIComponent(w.id)}`}>{w.name}</Link>
              </td>
              <td>{w.versions.length}</td>
              <td className="mono">{w.latestVersion.slice(0, 12)}</td>
              <td>{when(w.updatedAt)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </main>
  );
}

interface WorkflowDetail {
  id: string;
  name: string;
  latestVersion: string;
  versions: { version: string; publishedAt: string; definition: Definition }[];
}

export function WorkflowPage({ id }: { id: string }) {
  const [version, setVersion] = useState<string | null>(null);
  const [input, setInput] = useState("{}");
  const [submitError, setSubmitError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const { data, error } = usePolled(
    async () => {
      const d = await gql<{ workflow: WorkflowDetail | null }>(
        `query W($id: ID!) { workflow(id: $id) { id name latestVersion
           versions(first: 100) { version publishedAt definition } } }`,
        { id },
      );
      return d.workflow;
    },
    10000,
    [id],
  );
  if (error) return <ErrorBox error={error} />;
  if (!data) return <p className="hint">Loading…</p>;
  const shown = data.versions.find((v) => v.version === version) ?? data.versions.at(-1);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setSubmitError(null);
    const parsed = parseJson(input);
    if (parsed.error) {
      setSubmitError(parsed.error);
      return;
    }
    setBusy(true);
    try {
      const body: Record<string, unknown> = { workflow_id: data.id, version: shown?.version };
      if (parsed.value !== undefined) body.input = parsed.value;
      const r = await rest<{ run_id: string }>("POST", "/v1/runs", body);
      navigate(`/runs/${r.run_id}`);
    } catch (err) {
      setSubmitError(message(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <main>
      <h1>
        Workflow <span className="mono">{data.name}</span>
      </h1>
      <div className="toolbar">
        <label>
          Version{" "}
          <select
            value={shown?.version ?? ""}
            onChange={(e) => setVersion(e.target.value)}
            aria-label="version"
          >
            {data.versions.map((v, i) => (
              <option key={v.version} value={v.version}>
                {i + 1}: {v.version.slice(0, 12)} ({when(v.publishedAt)})
              </option>
            ))}
          </select>
        </label>
      </div>
      {shown && <Dag key={shown.version} layoutKey={shown.version} definition={shown.definition} statuses={null} />}
      <section className="card">
        <h2>Submit a run</h2>
        <form onSubmit={submit}>
          <label htmlFor="run-input">Input (JSON)</label>
          <textarea
            id="run-input"
            rows={6}
            value={input}
            onChange={(e) => setInput(e.target.value)}
            spellCheck={false}
          />
          <button type="submit" disabled={busy}>
            Submit run
          </button>
          <ErrorBox error={submitError} />
        </form>
      </section>
      <details>
        <summary>Definition</summary>
        <Json value={shown?.definition} />
      </details>
    </main>
  );
}
