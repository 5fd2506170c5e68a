// Every call the console makes goes through AOB's public APIs: GraphQL on this origin (the
// query API serves the console), REST on the command API (which allows this origin: CORS).
// The API key lives in sessionStorage: it is kept for this tab only.

const KEY = "aob.apiKey";

export class ApiError extends Error {
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
  }
}

export function apiKey(): string | null {
  return sessionStorage.getItem(KEY);
}

export function setApiKey(key: string | null): void {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

interface Config {
  commandApiUrl: string;
  graphqlPath: string;
}

let config: Config | null = null;

export async function loadConfig(): Promise<Config> {
  if (config) return config;
  const r = await fetch(`${import.meta.env.BASE_URL}config.json`);
  if (!r.ok) throw new ApiError(`the console's configuration did not load (${r.status})`);
  config = (await r.json()) as Config;
  return config;
}

// The reason an API gave: a problem's `detail` (and its field `errors`), or GraphQL's errors.
async function reason(r: Response): Promise<string> {
  const text = await r.text();
  try {
    const body = JSON.parse(text) as { detail?: unknown; errors?: unknown };
    const parts: string[] = [];
    if (typeof body.detail === "string") parts.push(body.detail);
    else if (body.detail !== undefined) parts.push(JSON.stringify(body.detail));
    if (Array.isArray(body.errors)) {
      for (const e of body.errors) {
        const msg = typeof e === "string" ? e : (e as { message?: string }).message;
        if (msg && !parts.includes(msg)) parts.push(msg);
      }
    }
    if (parts.length) return parts.join("; ");
  } catch {
    // not JSON: the text itself
  }
  return text || `${r.status} ${r.statusText}`;
}

function headers(key: string | null = apiKey()): Record<string, string> {
  const h: Record<string, string> = { "Content-Type": "application/json" };
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

export async function gql<T>(
  query: string,
  variables: Record<string, unknown> = {},
  key?: string,
): Promise<T> {
  const { graphqlPath } = await loadConfig();
  const r = await fetch(graphqlPath, {
    method: "POST",
    headers: headers(key ?? apiKey()),
    body: JSON.stringify({ query, variables }),
  });
  if (!r.ok) throw new ApiError(await reason(r), r.status);
  const body = (await r.json()) as { data?: T; errors?: { message: string }[] };
  if (body.errors?.length) throw new ApiError(body.errors.map((e) => e.message).join("; "));
  return body.data as T;
}

export async function rest<T>(method: string, path: string, body?: unknown): Promise<T> {
  const { commandApiUrl } = await loadConfig();
  let r: Response;
  try {
    r = await fetch(commandApiUrl + path, {
      method,
      headers: headers(),
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(`the command API at ${commandApiUrl} did not answer: ${String(e)}`);
  }
  if (!r.ok) throw new ApiError(`${r.status}: ${await reason(r)}`, r.status);
  return (await r.json()) as T;
}

// A GraphQL subscription over WebSocket (graphql-transport-ws), the key in connection_init.
// Returns a function that ends it. `onEnd` hears why it ended (null: the server completed
// it, e.g. after a run's terminal status).
export function subscribe<T>(
  query: string,
  variables: Record<string, unknown>,
  onNext: (data: T) => void,
  onEnd: (reason: string | null) => void,
): () => void {
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/graphql`;
  const ws = new WebSocket(url, "graphql-transport-ws");
  let done = false;
  const finish = (why: string | null) => {
    if (done) return;
    done = true;
    onEnd(why);
  };
  ws.onopen = () =>
    ws.send(
      JSON.stringify({ type: "connection_init", payload: { Authorization: `Bearer ${apiKey()}` } }),
    );
  ws.onmessage = (m) => {
    const msg = JSON.parse(String(m.data)) as { type: string; payload?: unknown };
    if (msg.type === "connection_ack") {
      ws.send(JSON.stringify({ id: "1", type: "subscribe", payload: { query, variables } }));
    } else if (msg.type === "ping") {
      ws.send(JSON.stringify({ type: "pong" }));
    } else if (msg.type === "next") {
      const p = msg.payload as { data?: T; errors?: { message: string }[] };
      if (p.errors?.length) finish(p.errors.map((e) => e.message).join("; "));
      else if (p.data) onNext(p.data);
    } else if (msg.type === "error") {
      const errs = msg.payload as { message: string }[];
      finish(errs.map((e) => e.message).join("; "));
    } else if (msg.type === "complete") {
      finish(null);
      ws.close(1000);
    }
  };
  ws.onclose = (e) => finish(e.code === 1000 ? null : e.reason || `connection closed (${e.code})`);
  return () => {
    done = true;
    ws.close(1000);
  };
}
