import { useCallback, useEffect, useRef, useState } from "react";
import { ApiError } from "./api";

export function message(e: unknown): string {
  return e instanceof ApiError || e instanceof Error ? e.message : String(e);
}

export function ErrorBox({ error }: { error: string | null }) {
  if (!error) return null;
  return (
    <div className="error" role="alert" data-testid="error">
      {error}
    </div>
  );
}

export function Status({ status }: { status: string }) {
  return (
    <span className={`badge status-${status}`} data-testid="status">
      {status}
    </span>
  );
}

export function when(iso?: string | null): string {
  return iso ? new Date(iso).toLocaleString() : "";
}

export function Json({ value }: { value: unknown }) {
  return <pre className="json">{JSON.stringify(value, null, 2)}</pre>;
}

// Loads with `load` now and every `everyMs` (a list kept fresh by polling), with the error
// of the last attempt.
export function usePolled<T>(load: () => Promise<T>, everyMs: number, deps: unknown[]) {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<string | null>(null);
  const loadRef = useRef(load);
  loadRef.current = load;
  const refresh = useCallback(async () => {
    try {
      setData(await loadRef.current());
      setError(null);
    } catch (e) {
      setError(message(e));
    }
  }, []);
  useEffect(() => {
    void refresh();
    const t = setInterval(() => void refresh(), everyMs);
    return () => clearInterval(t);
  }, deps);
  return { data, error, refresh };
}

// Parses the text of a JSON field: the value, or the parser's reason.
export function parseJson(text: string): { value?: unknown; error?: string } {
  if (!text.trim()) return { value: undefined };
  try {
    return { value: JSON.parse(text) };
  } catch (e) {
    return { error: `invalid JSON: ${message(e)}` };
  }
}
